"""ACI-BENCH notes (challenge_data CSVs) joined with gold-label CSVs."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from pathlib import Path

from data.errors import DatasetError
from data.checks import CodeChecker, Validator
from data.labels import read_labels
from data.text import read_text
from data.records import Dataset, Mention, NoteRecord

FILES = {
    "train": "train.csv",
    "valid": "valid.csv",
    "test1": "clinicalnlp_taskB_test1.csv",
    "test2": "clinicalnlp_taskC_test2.csv",
    "test3": "clef_taskC_test3.csv",
}
ALIASES = {"test": ("test1", "test2", "test3"), "dev": ("train", "valid")}
COLUMNS = {"dataset", "encounter_id", "dialogue", "note"}


def expand_splits(splits: Sequence[str]) -> tuple[str, ...]:
    """'test' is test1+test2+test3 and 'dev' is train+valid (D2N001-087, the labelled encounters)."""
    names: list[str] = []
    for split in splits:
        for name in ALIASES.get(split, (split,)):
            if name not in FILES:
                known = ", ".join([*FILES, *ALIASES])
                raise DatasetError(f"unknown ACI-BENCH split {split!r}; use one of {known} (join with '+')")
            if name not in names:
                names.append(name)
    return tuple(names)


def read_notes(folder: Path, split: str) -> list[tuple[str, str]]:
    """(encounter_id, note) pairs of one split file, in file order."""
    path = Path(folder) / FILES[split]
    if not path.is_file():
        raise DatasetError(f"ACI-BENCH file not found: {path} (set ACI_BENCH_DIR to the challenge_data folder)")
    csv.field_size_limit(sys.maxsize)
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), strict=True)
    try:
        missing = COLUMNS - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"{path}: not an ACI-BENCH CSV, missing columns {', '.join(sorted(missing))}")
        notes = []
        for row in reader:
            if not row["encounter_id"] or row["note"] is None:
                raise DatasetError(f"{path}:{reader.line_num}: row without encounter_id or note")
            notes.append((row["encounter_id"].strip(), row["note"]))
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return notes


def load_aci(
    folder: Path,
    splits: Sequence[str],
    *,
    labels: Path | None = None,
    validator: Validator | None = None,
    name: str | None = None,
) -> Dataset:
    """Notes of the given splits. With `labels`, only the labelled notes are kept (the label
    files cover part of the encounters; a missing encounter means unknown, not 'no codes');
    without, every note is kept with empty gold codes. The report says which."""
    splits = expand_splits(splits)
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"ACI-BENCH folder not found: {folder} (set ACI_BENCH_DIR to the challenge_data folder)")
    notes = [note for split in splits for note in read_notes(folder, split)]
    name = name or "aci:" + "+".join(splits)
    if labels is None:
        records = tuple(NoteRecord(id=note_id, text=text, codes=()) for note_id, text in notes)
        remark = f"no labels given: {len(records)} notes with empty gold codes (pass --labels CSV to score)"
        return Dataset.collect(name, records, (), validated=validator is not None, remarks=(remark,))
    by_encounter = read_labels(labels)
    gold = CodeChecker(validator)
    records = []
    for note_id, text in notes:
        rows = by_encounter.get(note_id)
        if not rows:
            continue
        codes = tuple(gold(note_id, row.code) for row in rows)
        mentions = tuple(Mention(row.mention, code) for row, code in zip(rows, codes) if row.mention)
        records.append(NoteRecord(id=note_id, text=text, codes=tuple(dict.fromkeys(codes)), mentions=mentions))
    dropped = len(notes) - len(records)
    remarks = [f"labels {Path(labels).name}: {len(records)} of {len(notes)} notes labelled"]
    if dropped:
        remarks.append(f"{dropped} notes without labels left out")
    return Dataset.collect(name, records, gold.flagged, validated=validator is not None, remarks=remarks)
