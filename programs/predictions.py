"""The predictions file of a batch, whoever codes its notes: JSON lines appended and flushed as
notes finish (a rerun skips the ids already there), the summary of a run (notes written,
skipped, failed; LM usage; the model failure that stopped it), and `code_batch`, which feeds the
notes to a pool of threads and records each outcome. No model code: the threads engine
(`programs.batch`), the Ray engine and the coding service's client (`service.client`) share it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data.records import NoteRecord
from programs.concurrency import Feed
from programs.errors import BatchError, ModelError


@dataclass(frozen=True)
class Outcome:
    """What became of one note: coded (`line`, its JSONL line, and its LM `usage`), `failed`
    (a note that cannot be coded, with the reason) or `stopped` (the model failed)."""

    id: str
    line: str = ""
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: str = ""
    stopped: str = ""


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


def code_batch(todo: Sequence[NoteRecord], summary: BatchSummary, code: Callable[[NoteRecord], Outcome], *, threads: int,
               ahead: int, on_note: Callable[[str], None] | None = None) -> BatchSummary:
    """`code(record)` for each of `todo` on `threads` threads, at most `ahead` notes handed out
    and not yet back, each outcome recorded in `summary` (lines appended to its output) as it
    finishes. The first model failure stops the run: the notes being coded then are still
    recorded, no other starts."""
    with Appender(summary.output) as sink, ThreadPoolExecutor(max_workers=threads) as pool:
        feed = Feed(pool, code, todo, ahead)
        for _, future in feed:
            outcome = future.result()
            summary.record(outcome, sink)
            if outcome.stopped:
                feed.stop()
            elif on_note:
                on_note(outcome.id)
    return summary
