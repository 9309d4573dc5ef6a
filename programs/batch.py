"""Code one note or many: resumable JSONL output written line by line, concurrent notes, LM
usage and cost totals. Shared by `predict`, `evaluate` and `compare`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import LMError

from data.records import NoteRecord
from programs.base import CodingProgram
from programs.errors import BatchError, NoteError
from programs.lm import history_cost, model_error
from programs.result import CodingResult


def code_note(program: CodingProgram, note: str, lm: dspy.LM | None) -> CodingResult:
    """One note through `program` with `lm` (None: its rules alone); LM failures become a
    one-line ModelError."""
    try:
        with dspy.context(lm=lm):
            return program(note=note).result
    except LMError as exc:
        raise model_error(exc, lm.model) from None


@dataclass
class BatchSummary:
    output: Path
    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost: float = 0.0

    def add_usage(self, usage: dict[str, dict[str, Any]]) -> None:
        for model, counts in usage.items():
            total = self.usage.setdefault(model, {})
            for key, value in counts.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    total[key] = total.get(key, 0) + value


def finished_ids(output: Path) -> set[str]:
    """Ids already in `output`. A truncated last line (an interrupted write) is cut off; a
    malformed line elsewhere is an error."""
    if not output.exists():
        return set()
    data = output.read_bytes()
    ids: set[str] = set()
    offset = 0
    for line in data.split(b"\n"):
        end = offset + len(line)
        if line.strip():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                if data[end:].strip():
                    line_no = data[:offset].count(b"\n") + 1
                    raise BatchError(
                        f"{output}:{line_no} is not a prediction line; fix or remove it, or choose another --output"
                    ) from None
                with output.open("r+b") as handle:
                    handle.truncate(offset)
                return ids
            if end == len(data):
                with output.open("ab") as handle:
                    handle.write(b"\n")
        offset = end + 1
    return ids


def run_batch(
    program: CodingProgram,
    records: Sequence[NoteRecord],
    output: Path,
    lm: dspy.LM | None,
    *,
    threads: int = 1,
    on_note: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Codes every record not already in `output`, appending {"id", "codes", "result"} lines as
    notes finish. Notes that cannot be coded (empty, binary) are reported in `failed` and left
    out, so a rerun tries them again; an LM failure stops the run with what is done kept."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = finished_ids(output)
    summary = BatchSummary(output)
    todo = [record for record in records if record.id not in done]
    summary.skipped = len(records) - len(todo)
    start = len(lm.history) if lm is not None else 0
    with output.open("a", encoding="utf-8") as sink, ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending = {pool.submit(code_note, program, record.text, lm): record for record in todo}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: pending[f].id):
                    record = pending.pop(future)
                    try:
                        result = future.result()
                    except NoteError as exc:
                        summary.failed.append((record.id, str(exc)))
                    else:
                        line = {"id": record.id, "codes": result.code_list, "result": result.to_dict()}
                        sink.write(json.dumps(line, ensure_ascii=False) + "\n")
                        sink.flush()
                        os.fsync(sink.fileno())
                        summary.written += 1
                        summary.add_usage(result.usage)
                    if on_note:
                        on_note(record.id)
        finally:
            for future in pending:
                future.cancel()
    summary.cost = history_cost(lm, start)
    return summary

