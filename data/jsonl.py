"""The JSONL dataset format: one {"id", "text", "codes", "evidence"?, "mentions"?} object a line.

evidence items are {"code", "start", "end"}, mentions {"phrase", "code"}. `write_jsonl` and
`load_jsonl` round-trip. Other keys are ignored, except that a line the review app wrote for a
note still under review (`"review": {"status": "in progress"}`) is left out and counted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from data.errors import DatasetError
from data.checks import CodeChecker, Validator
from data.records import Dataset, Evidence, Mention, NoteRecord
from data.text import read_text


def record_to_json(record: NoteRecord) -> dict:
    line: dict = {"id": record.id, "text": record.text, "codes": list(record.codes)}
    if record.evidence:
        line["evidence"] = [{"code": e.code, "start": e.start, "end": e.end} for e in record.evidence]
    if record.mentions:
        line["mentions"] = [{"phrase": m.phrase, "code": m.code} for m in record.mentions]
    return line


def write_jsonl(records: Iterable[NoteRecord], path: Path) -> int:
    """Writes the records atomically (a temporary file renamed into place once complete), creating
    missing folders; returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    count = 0
    try:
        with temp.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record_to_json(record), ensure_ascii=False) + "\n")
                count += 1
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    return count


def parse_line(payload: object, where: str, gold: CodeChecker) -> NoteRecord:
    if not isinstance(payload, dict):
        raise DatasetError(f"{where}: expected a JSON object")
    note_id, text, codes = payload.get("id"), payload.get("text"), payload.get("codes", [])
    if not isinstance(note_id, (str, int)) or isinstance(note_id, bool) or str(note_id) == "":
        raise DatasetError(f'{where}: "id" must be a non-empty string')
    if not isinstance(text, str):
        raise DatasetError(f'{where}: "text" must be a string')
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise DatasetError(f'{where}: "codes" must be a list of strings')
    note_id = str(note_id)
    try:
        evidence = tuple(
            Evidence(gold(note_id, item["code"]), int(item["start"]), int(item["end"]))
            for item in payload.get("evidence") or ()
        )
        mentions = tuple(Mention(str(item["phrase"]), gold(note_id, item["code"])) for item in payload.get("mentions") or ())
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DatasetError(f'{where}: "evidence" items need code, start, end and "mentions" items phrase, code') from None
    for item in evidence:
        if not 0 <= item.start < item.end <= len(text):
            raise DatasetError(f"{where}: evidence {item.start}-{item.end} for {item.code} is outside the text")
    return NoteRecord(
        id=note_id,
        text=text,
        codes=tuple(dict.fromkeys(gold(note_id, code) for code in codes)),
        evidence=evidence,
        mentions=mentions,
    )


def read_json_lines(path: Path):
    """(where, payload) for each non-blank line of a JSONL text file (data.text: UTF-8 with or
    without a byte-order mark, UTF-16); `where` is 'file:line'."""
    lines = read_text(path).splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: malformed JSON ({exc.msg})") from None


def load_jsonl(path: Path, *, validator: Validator | None = None, name: str | None = None) -> Dataset:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"JSONL dataset not found: {path}")
    gold = CodeChecker(validator)
    records: list[NoteRecord] = []
    seen: set[str] = set()
    held = 0
    for where, payload in read_json_lines(path):
        if under_review(payload):
            held += 1
            continue
        record = parse_line(payload, where, gold)
        if record.id in seen:
            raise DatasetError(f"{where}: duplicate id {record.id!r}")
        seen.add(record.id)
        records.append(record)
    remarks = (f"{held} notes still under review left out (review status 'in progress')",) if held else ()
    return Dataset.collect(name or f"jsonl:{path}", records, gold.flagged, validated=validator is not None, remarks=remarks)


def under_review(payload: object) -> bool:
    """A line the review app wrote for a note the coder has not finished: not a label yet."""
    review = payload.get("review") if isinstance(payload, dict) else None
    return isinstance(review, dict) and review.get("status") == "in progress"
