"""Code one note or many: resumable JSONL output written line by line, concurrent notes within
one thread budget (`programs.concurrency`), LM usage and cost totals. Shared by `predict`,
`evaluate` and `compare`; the Ray engine (`programs.ray_engine`) codes notes with `code_record`
and writes them with `BatchSummary.record` as this threads engine does."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import LMError

from data.records import NoteRecord
from programs.base import CodingProgram
from programs.concurrency import Budget, Feed
from programs.errors import BatchError, ModelError, NoteError
from programs.lm import model_error, spent
from programs.result import CodingResult


def code_note(program: CodingProgram, note: str, lm: dspy.LM | None, budget: Budget | None = None) -> CodingResult:
    """One note through `program` with `lm` (None: its rules alone), its independent stage calls
    run within `budget` (None: one after the other); LM failures become a one-line ModelError."""
    try:
        with dspy.context(lm=lm), budget.note() if budget else nullcontext():
            return program(note=note).result
    except LMError as exc:
        raise model_error(exc, lm) from None


@dataclass(frozen=True)
class Outcome:
    """What became of one note: coded (`line`, its JSONL line, and its LM `usage`), `failed`
    (a note that cannot be coded, with the reason) or `stopped` (the model failed)."""

    id: str
    line: str = ""
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: str = ""
    stopped: str = ""


def code_record(program: CodingProgram, record_id: str, text: str, lm: dspy.LM | None, budget: Budget | None = None) -> Outcome:
    """`code_note` as an Outcome: only the note's own errors and the model's failure are caught."""
    try:
        result = code_note(program, text, lm, budget)
    except NoteError as exc:
        return Outcome(record_id, failed=str(exc))
    except ModelError as exc:
        return Outcome(record_id, stopped=str(exc))
    line = {"id": record_id, "codes": result.code_list, "result": result.to_dict()}
    return Outcome(record_id, json.dumps(line, ensure_ascii=False), result.usage)


@dataclass
class BatchSummary:
    output: Path
    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    cost: float = 0.0
    stopped: str = ""

    def record(self, outcome: Outcome, sink: Appender) -> None:
        """A coded note's line written to `sink`, a failed one listed, the first model failure kept."""
        if outcome.stopped:
            self.stopped = self.stopped or outcome.stopped
        elif outcome.failed:
            self.failed.append((outcome.id, outcome.failed))
        else:
            sink.write(outcome.line)
            self.written += 1
            self.add_usage(outcome.usage)

    def finish(self, total: int) -> BatchSummary:
        """This summary, or the model failure that stopped the run, saying how many of the
        `total` notes are saved and that a rerun resumes."""
        if self.stopped:
            saved = self.skipped + self.written
            raise ModelError(
                f"{self.stopped}; {saved} of {total} notes are saved in {self.output}: rerun with --output {self.output} to resume"
            )
        return self

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

    def write(self, line: str) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        self._handle.write(line + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def __enter__(self) -> Appender:
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()


def to_code(records: Sequence[NoteRecord], output: Path) -> tuple[list[NoteRecord], BatchSummary]:
    """The records not yet in `output`, and a summary that counts the others as skipped."""
    done = finished_ids(output)
    todo = [record for record in records if record.id not in done]
    return todo, BatchSummary(output, skipped=len(records) - len(todo))


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
    notes finish; at most `threads` threads at work at once, coding notes or the independent
    stage calls of a note. Notes that cannot be coded (empty, binary) are reported in `failed`
    and left out, so a rerun tries them again. A model that keeps failing stops the run: notes
    being coded at that moment are still saved, the others are not started, and the ModelError
    says how many notes the output holds and that a rerun resumes."""
    output = Path(output)
    todo, summary = to_code(records, output)
    budget = Budget(threads)
    before = spent(lm)
    try:
        with Appender(output) as sink, ThreadPoolExecutor(max_workers=budget.threads) as pool:
            feed = Feed(pool, lambda record: code_record(program, record.id, record.text, lm, budget), todo, 2 * budget.threads)
            for _, future in feed:
                outcome = future.result()
                summary.record(outcome, sink)
                if outcome.stopped:
                    feed.stop()
                elif on_note:
                    on_note(outcome.id)
    finally:
        budget.close()
    summary.cost = spent(lm) - before
    return summary.finish(len(records))
