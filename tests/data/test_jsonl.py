import json
import os
from pathlib import Path

import pytest

from data.errors import DatasetError
from data.jsonl import load_jsonl, write_jsonl
from data.records import Evidence, Mention, NoteRecord
from data.specs import load_dataset


def test_round_trip_of_a_real_dataset(labels_dir, tmp_path):
    dev = load_dataset(
        "aci:dev", aci_dir=Path(os.environ["ACI_BENCH_DIR"]), labels=labels_dir / "aci_icd10cm_medcoder_train_valid.csv"
    )
    assert write_jsonl(dev, tmp_path / "dev.jsonl") == 67
    again = load_jsonl(tmp_path / "dev.jsonl")
    assert again.records == dev.records
    assert again.report.flagged == dev.report.flagged


def test_evidence_and_codes_are_normalised(tmp_path):
    record = NoteRecord("n1", "Type 2 diabetes.", ("E11.9",), (Evidence("E11.9", 0, 15),), (Mention("Type 2 diabetes", "E11.9"),))
    path = tmp_path / "notes.jsonl"
    path.write_text(
        json.dumps({"id": "n1", "text": "Type 2 diabetes.", "codes": ["e119", "E11.9"], "evidence": [{"code": "E119", "start": 0, "end": 15}], "mentions": [{"phrase": "Type 2 diabetes", "code": "e11.9"}]})
        + "\n\n"
        + json.dumps({"id": 7, "text": "No findings.", "codes": []})
        + "\n"
    )
    dataset = load_jsonl(path)
    assert dataset.records == (record, NoteRecord("7", "No findings.", ()))
    assert dataset.report.notes == 2 and dataset.report.codes == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "a", "text": "x", "codes": ["I10"]', "malformed JSON"),
        ('["a"]', "expected a JSON object"),
        ('{"text": "x", "codes": []}', '"id"'),
        ('{"id": "a", "codes": []}', '"text"'),
        ('{"id": "a", "text": "x", "codes": "I10"}', '"codes"'),
        ('{"id": "a", "text": "x", "codes": [], "evidence": [{"code": "I10"}]}', '"evidence"'),
        ('{"id": "a", "text": "x", "codes": [], "evidence": [{"code": "I10", "start": 0, "end": 5}]}', "outside the text"),
        ('{"id": "b", "text": "x", "codes": []}', "duplicate id"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "b", "text": "ok", "codes": ["I10"]}\n' + line + "\n")
    with pytest.raises(DatasetError, match=rf"bad\.jsonl:2: .*{message}"):
        load_jsonl(path)


def test_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(f"jsonl:{tmp_path / 'none.jsonl'}")


def test_a_dataset_without_notes_is_an_error(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="holds no notes"):
        load_dataset(f"jsonl:{tmp_path / 'empty.jsonl'}")
