import csv
import gzip
import json
import os
from pathlib import Path

import pytest

from data.errors import DatasetError
from data.mdace import load_mdace
from data.specs import load_dataset

COLUMNS = ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME", "CATEGORY", "DESCRIPTION", "CGID", "ISERROR", "TEXT"]


@pytest.fixture(scope="module")
def mdace_dir() -> Path:
    return Path(os.environ["MDACE_DIR"])


def annotated_notes(mdace_dir: Path, split: str, setting: str) -> dict[str, list[dict]]:
    """ICD-10-CM spans per note id, read straight from the real annotation files."""
    hadm_ids = (mdace_dir / "splits" / setting / f"MDace-ev-{split}.csv").read_text().split()
    notes: dict[str, list[dict]] = {}
    for hadm_id in hadm_ids:
        admission = json.loads((mdace_dir / "data" / setting / "ICD-10" / "1.0" / f"{hadm_id}-ICD-10.json").read_text())
        for note in admission["notes"]:
            spans = [a for a in note["annotations"] if a["code_system"] == "ICD-10-CM"]
            if spans:
                notes[str(note["note_id"])] = spans
    return notes


def synthetic_text(note_id: str, spans: list[dict]) -> str:
    """Filler long enough for the offsets, with 'Q' marks over the first span, quotes and newlines."""
    length = max(s["end"] for s in spans) + 40
    text = list(("note " + note_id + ', "quoted", line\n') * (length // 20 + 1))[:length]
    first = spans[0]
    text[first["begin"] : first["end"]] = "Q" * (first["end"] - first["begin"])
    return "".join(text)


def write_noteevents(path: Path, texts: dict[str, str]) -> None:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerow(["1", "9", "100", "2150-01-01", "", "", "Nursing", "Note", "", "", "not annotated"])
        for row_id, text in texts.items():
            writer.writerow([row_id, "9", "100", "2150-01-01", "", "", "Discharge summary", "Report", "", "", text])


@pytest.mark.parametrize("file_name", ["NOTEEVENTS.csv", "NOTEEVENTS.csv.gz"])
def test_spans_index_the_note_text(mdace_dir, tmp_path, file_name):
    notes = annotated_notes(mdace_dir, "val", "Inpatient")
    texts = {note_id: synthetic_text(note_id, spans) for note_id, spans in notes.items()}
    write_noteevents(tmp_path / file_name, texts)
    dataset = load_mdace(mdace_dir, "val", notes=tmp_path / file_name)
    assert len(dataset) == len(notes) > 30
    assert sum(len(r.evidence) for r in dataset) == sum(len(s) for s in notes.values())
    for record in dataset:
        first = notes[record.id][0]
        assert record.text == texts[record.id]
        assert record.text[record.evidence[0].start : record.evidence[0].end] == "Q" * (first["end"] - first["begin"])
        assert record.evidence[0].code == first["code"]
        assert set(record.codes) == {e.code for e in record.evidence}
    assert any("60 admissions" in remark for remark in dataset.report.remarks)


def test_notes_missing_from_noteevents_are_counted(mdace_dir, tmp_path):
    notes = annotated_notes(mdace_dir, "test", "Profee")
    kept = dict(list(notes.items())[:3])
    write_noteevents(tmp_path / "NOTEEVENTS.csv", {k: synthetic_text(k, v) for k, v in kept.items()})
    dataset = load_dataset("mdace:test:profee", mdace_dir=mdace_dir, mimic_notes=tmp_path / "NOTEEVENTS.csv")
    assert [r.id for r in dataset] == list(kept)
    assert any(f"{len(notes) - 3} annotated notes not in NOTEEVENTS.csv" in remark for remark in dataset.report.remarks)


def test_without_note_text_the_error_says_what_is_needed(mdace_dir, tmp_path):
    with pytest.raises(DatasetError, match="--mimic-notes.*NOTEEVENTS.csv.*PhysioNet.*credentialed"):
        load_dataset("mdace:train", mdace_dir=mdace_dir)
    with pytest.raises(DatasetError, match="MDACE_DIR"):
        load_dataset("mdace:train", mimic_notes=tmp_path / "NOTEEVENTS.csv")
    with pytest.raises(DatasetError, match="notes file not found"):
        load_mdace(mdace_dir, "val", notes=tmp_path / "NOTEEVENTS.csv")
    with pytest.raises(DatasetError, match="unknown MDACE dataset"):
        load_dataset("mdace:dev")
    (tmp_path / "NOTEEVENTS.csv").write_text("ROW_ID,NOTE\n1,x\n")
    with pytest.raises(DatasetError, match="missing columns TEXT"):
        load_mdace(mdace_dir, "val", notes=tmp_path / "NOTEEVENTS.csv")
