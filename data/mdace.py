"""MDACE evidence annotations (ICD-10-CM spans only) joined with MIMIC-III note text."""

from __future__ import annotations

import csv
import gzip
import json
import sys
from collections.abc import Iterable
from pathlib import Path

from data.errors import DatasetError
from data.checks import CodeChecker, Validator
from data.records import Dataset, Evidence, NoteRecord
from data.text import read_text

SPLITS = ("train", "val", "test")
SETTINGS = {"inpatient": "Inpatient", "profee": "Profee"}
NOTEEVENTS_COLUMNS = {"ROW_ID", "TEXT"}
NEEDS_NOTES = (
    "MDACE has no note text: pass --mimic-notes PATH to MIMIC-III NOTEEVENTS.csv or NOTEEVENTS.csv.gz "
    "(v1.4, from PhysioNet with credentialed access: https://physionet.org/content/mimiciii/)"
)


def read_split(folder: Path, split: str, setting: str) -> list[str]:
    """The admission ids of the evidence split used by Code Like Humans (MDace-ev-<split>.csv)."""
    path = Path(folder) / "splits" / SETTINGS[setting] / f"MDace-ev-{split}.csv"
    if not path.is_file():
        raise DatasetError(f"MDACE split file not found: {path} (set MDACE_DIR to the MDACE folder)")
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def read_admission(folder: Path, setting: str, hadm_id: str) -> dict:
    path = Path(folder) / "data" / SETTINGS[setting] / "ICD-10" / "1.0" / f"{hadm_id}-ICD-10.json"
    if not path.is_file():
        raise DatasetError(f"MDACE annotation file not found: {path} (set MDACE_DIR to the MDACE folder)")
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}:{exc.lineno}: malformed JSON ({exc.msg})") from None


def read_note_texts(path: Path, note_ids: Iterable[str]) -> dict[str, str]:
    """TEXT by ROW_ID for the wanted notes, streaming NOTEEVENTS.csv or .csv.gz."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"MIMIC-III notes file not found: {path}. {NEEDS_NOTES}")
    wanted = set(note_ids)
    texts: dict[str, str] = {}
    csv.field_size_limit(sys.maxsize)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, strict=True)
        try:
            missing = NOTEEVENTS_COLUMNS - set(reader.fieldnames or ())
            if missing:
                raise DatasetError(f"{path}: not a NOTEEVENTS CSV, missing columns {', '.join(sorted(missing))}")
            for row in reader:
                row_id = (row["ROW_ID"] or "").strip()
                if row_id in wanted:
                    texts[row_id] = row["TEXT"]
                    if len(texts) == len(wanted):
                        break
        except (csv.Error, gzip.BadGzipFile, EOFError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}:{reader.line_num}: malformed NOTEEVENTS file ({exc})") from None
    return texts


def load_mdace(
    folder: Path,
    split: str,
    setting: str = "inpatient",
    *,
    notes: Path | None = None,
    validator: Validator | None = None,
    name: str | None = None,
    offsets_only: bool = False,
) -> Dataset:
    """One record per annotated note (id = NOTEEVENTS ROW_ID) with its ICD-10-CM codes and spans.
    Notes without ICD-10-CM spans, notes absent from NOTEEVENTS and spans outside the note
    text are left out and counted in the report. With `offsets_only` and no `notes`, every
    annotated note is kept with empty text and its spans unchecked (MIMIC-III text is not
    redistributable: what is built from such records carries offsets only)."""
    if split not in SPLITS:
        raise DatasetError(f"unknown MDACE split {split!r}; use one of {', '.join(SPLITS)}")
    if setting not in SETTINGS:
        raise DatasetError(f"unknown MDACE setting {setting!r}; use one of {', '.join(SETTINGS)}")
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"MDACE folder not found: {folder} (set MDACE_DIR to the MDACE folder)")
    admissions = [read_admission(folder, setting, hadm_id) for hadm_id in read_split(folder, split, setting)]
    if notes is None and not offsets_only:
        raise DatasetError(NEEDS_NOTES)
    annotated = [
        (str(note["note_id"]), [a for a in note["annotations"] if a.get("code_system") == "ICD-10-CM"])
        for admission in admissions
        for note in admission["notes"]
    ]
    without_cm = sum(1 for _, spans in annotated if not spans)
    annotated = [(note_id, spans) for note_id, spans in annotated if spans]
    if notes is None:
        texts = None
    else:
        texts = read_note_texts(notes, (note_id for note_id, _ in annotated))
    gold = CodeChecker(validator)
    records, outside = [], 0
    for note_id, spans in annotated:
        if texts is not None and note_id not in texts:
            continue
        text = "" if texts is None else texts[note_id]
        evidence = []
        for span in spans:
            start, end = int(span["begin"]), int(span["end"])
            if not 0 <= start < end or (texts is not None and end > len(text)):
                outside += 1
                continue
            evidence.append(Evidence(gold(note_id, span["code"]), start, end))
        if evidence:
            codes = tuple(dict.fromkeys(e.code for e in evidence))
            records.append(NoteRecord(id=note_id, text=text, codes=codes, evidence=tuple(evidence)))
    remarks = [f"{SETTINGS[setting]} {split}: {len(admissions)} admissions, {len(records)} notes with ICD-10-CM spans"]
    if without_cm:
        remarks.append(f"{without_cm} notes without ICD-10-CM spans left out")
    if texts is None:
        remarks.append("offsets only: no note text (pass --mimic-notes NOTEEVENTS.csv.gz for the text)")
    absent = 0 if texts is None else len(annotated) - len(texts)
    if absent:
        remarks.append(f"{absent} annotated notes not in {Path(notes).name} left out (is it MIMIC-III v1.4?)")
    if outside:
        remarks.append(f"{outside} spans outside their note text left out (is it MIMIC-III v1.4?)")
    return Dataset.collect(
        name or f"mdace:{split}:{setting}", records, gold.flagged, validated=validator is not None, remarks=remarks
    )
