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
from programs.errors import BatchError, ModelError, NoteError
from programs.lm import history_cost, model_error
from programs.result import CodingResult


def code_note(program: CodingProgram, note: str, lm: dspy.LM | None) -> CodingResult:
    """One note through `program` with `lm` (None: its rules alone); LM failures become a
    one-line ModelError."""
    try:
        with dspy.context(lm=lm):
            return program(note=note).result
    except LMError as exc:
        raise model_error(exc, lm) from None


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


class Appender:
    """Appends JSON lines to a file, each flushed to disk before the next; the file (and its
    folder) is created with the first line, so a run that codes nothing leaves nothing behind."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = None

    def write(self, line: dict[str, Any]) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()


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
    out, so a rerun tries them again. A model that keeps failing stops the run: notes being
    coded at that moment are still saved, the others are not started, and the ModelError says
    how many notes the output holds and that a rerun resumes."""
    output = Path(output)
    done = finished_ids(output)
    summary = BatchSummary(output)
    todo = [record for record in records if record.id not in done]
    summary.skipped = len(records) - len(todo)
    start = len(lm.history) if lm is not None else 0
    stop: ModelError | None = None
    with Appender(output) as sink, ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        pending = {pool.submit(code_note, program, record.text, lm): record for record in todo}
        try:
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(finished, key=lambda f: pending[f].id):
                    record = pending.pop(future)
                    if future.cancelled():
                        continue
                    try:
                        result = future.result()
                    except NoteError as exc:
                        summary.failed.append((record.id, str(exc)))
                    except ModelError as exc:
                        stop = stop or exc
                        for other in pending:
                            other.cancel()
                        continue
                    else:
                        sink.write({"id": record.id, "codes": result.code_list, "result": result.to_dict()})
                        summary.written += 1
                        summary.add_usage(result.usage)
                    if on_note:
                        on_note(record.id)
        finally:
            for future in pending:
                future.cancel()
    summary.cost = history_cost(lm, start)
    if stop is not None:
        saved = summary.skipped + summary.written
        raise ModelError(
            f"{stop}; {saved} of {len(records)} notes are saved in {output}: rerun with --output {output} to resume"
        )
    return summary
