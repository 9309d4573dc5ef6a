"""The review of a dataset's notes, kept in the --out file.

Every change is written at once: the whole file to a temporary file beside it, fsync, rename,
under an exclusive lock on a lock file beside it. Before each change the file is read again if
another process (a second app on the same file) wrote it since, so no decision is lost between
tabs or processes; a change to a suggestion that someone else changed since the page showed it
is refused (model.Conflict). Lines of notes that are not in the dataset are kept as they are.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from data.errors import DatasetError
from data.jsonl import read_json_lines
from data.records import NoteRecord
from programs.result import StageTrace
from review import model
from review.codes import CodeBook
from review.errors import ReviewError
from review.model import NoteReview
from review.predictions import Predicted


def encoded(payload: object) -> bytes:
    return (json.dumps(payload, ensure_ascii=False) + "\n").encode("utf-8")


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class QueueRow:
    index: int
    note: NoteReview
    gold: tuple[str, ...]

    @property
    def state(self) -> str:
        return model.REVIEWED if self.note.done else model.IN_PROGRESS if self.note.touched else "new"

    @property
    def gold_differs(self) -> bool:
        return bool(self.gold) and set(self.gold) != {s.code for s in self.note.suggestions}


# Queue filters: name -> (label, test). "gold" is offered only when the dataset has gold codes.
FILTERS: dict[str, tuple[str, Callable[[QueueRow], bool]]] = {
    "all": ("all", lambda row: True),
    "todo": ("not reviewed", lambda row: not row.note.done),
    "reviewed": ("reviewed", lambda row: row.note.done),
    "changed": ("coder disagreed", lambda row: row.note.changed),
    "gold": ("model differs from gold", lambda row: row.gold_differs),
}


class ReviewStore:
    def __init__(self, records: Sequence[NoteRecord], predicted: Mapping[str, Predicted], out: Path,
                 codes: CodeBook, reviewer: str, *, clock: Callable[[], str] = utc_now):
        self.records = tuple(records)
        self.position = {record.id: i for i, record in enumerate(self.records)}
        self.predicted = dict(predicted)
        self.out = Path(out)
        self.codes = codes
        self.reviewer = reviewer
        self.clock = clock
        self.has_gold = any(record.codes for record in self.records)
        self._lock = threading.Lock()
        self._notes: dict[str, NoteReview] = {}
        self._lines: dict[str, bytes] = {}  # each note's line as last written, so a save encodes one note
        self._foreign: list[bytes] = []
        self._signature: tuple | None = None
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            self._refresh()

    # -- reading ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.records)

    def note(self, index: int) -> NoteReview:
        record = self.record(index)
        with self._locked():
            self._refresh()
            return self._current(record)

    def record(self, index: int) -> NoteRecord:
        if not 0 <= index < len(self.records):
            raise ReviewError(f"no note {index}: the dataset has {len(self.records)}")
        return self.records[index]

    def trace(self, index: int) -> tuple[StageTrace, ...]:
        """The program's trace, when the note's suggestions are the ones in the predictions file."""
        record = self.record(index)
        predicted = self.predicted.get(record.id)
        if predicted is None:
            return ()
        shown = [s.code for s in self.note(index).suggestions]
        return predicted.trace if shown == [s.code for s in predicted.suggestions] else ()

    def queue(self, name: str = "all") -> list[QueueRow]:
        label_test = FILTERS.get(name)
        if label_test is None:
            raise ReviewError(f"unknown filter {name!r}; use {', '.join(FILTERS)}")
        with self._locked():
            self._refresh()
            rows = [QueueRow(i, self._current(r), r.codes) for i, r in enumerate(self.records)]
        return [row for row in rows if label_test[1](row)]

    def progress(self) -> tuple[int, int]:
        """(reviewed, total) notes."""
        with self._locked():
            self._refresh()
            return sum(note.done for note in self._notes.values()), len(self.records)

    def reviews(self) -> list[NoteReview]:
        return [row.note for row in self.queue("all")]

    # -- changes ---------------------------------------------------------------------------

    def decide(self, index: int, suggestion: int, verdict: str, *, seen: str, reason: str = "",
               replacement: str = "") -> NoteReview:
        """Accept, reject, replace (with a billable code) or undo (`pending`) a suggestion."""
        if verdict == model.REPLACED:
            replacement = self.codes.check(replacement)
        return self._change(index, lambda note, who, when: model.decide(
            note, suggestion, verdict, seen=seen, who=who, when=when, reason=reason, replacement=replacement))

    def add(self, index: int, code: str, start: int, end: int) -> NoteReview:
        code = self.codes.check(code)
        return self._change(index, lambda note, who, when: model.add(note, code, start, end, who=who, when=when))

    def remove_added(self, index: int, key: str) -> NoteReview:
        return self._change(index, lambda note, who, when: model.remove_added(note, key, who=who, when=when))

    def mark_done(self, index: int, done: bool = True) -> NoteReview:
        return self._change(index, lambda note, who, when: model.mark_done(note, done, who=who, when=when))

    def _change(self, index: int, change: Callable[[NoteReview, str, str], NoteReview]) -> NoteReview:
        record = self.record(index)
        with self._locked():
            self._refresh()
            before = self._current(record)
            after = change(before, self.reviewer, self.clock())
            if after != before:
                self._lines.pop(record.id, None)
                if after.touched:
                    self._notes[record.id] = after
                else:
                    self._notes.pop(record.id, None)
                self._write()
            return after

    # -- the file --------------------------------------------------------------------------

    def _current(self, record: NoteRecord) -> NoteReview:
        stored = self._notes.get(record.id)
        if stored is not None:
            return stored
        predicted = self.predicted.get(record.id)
        if predicted is None:
            return NoteReview(record.id, record.text, ())
        return NoteReview(record.id, record.text, predicted.suggestions, program=predicted.program)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock, open(self.out.with_name(f".{self.out.name}.lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _stat(self) -> tuple | None:
        try:
            found = self.out.stat()
        except FileNotFoundError:
            return None
        return found.st_ino, found.st_size, found.st_mtime_ns

    def _refresh(self) -> None:
        signature = self._stat()
        if signature == self._signature:
            return
        notes: dict[str, NoteReview] = {}
        foreign: list[bytes] = []
        if signature is not None:
            try:
                lines = list(read_json_lines(self.out))
            except DatasetError as exc:
                raise ReviewError(f"{exc}; fix the line or choose another --out") from None
            for where, payload in lines:
                note_id = str(payload.get("id")) if isinstance(payload, dict) else None
                if note_id not in self.position:
                    foreign.append(encoded(payload))
                    continue
                note = model.from_line(payload, where)
                if note.text != self.records[self.position[note_id]].text:
                    raise ReviewError(f"{where}: note {note_id} has another text than in the dataset; "
                                      "review this dataset into another --out")
                if note_id in notes:
                    raise ReviewError(f"{where}: note {note_id} appears twice")
                notes[note_id] = note
        self._notes, self._foreign, self._signature, self._lines = notes, foreign, signature, {}

    def _write(self) -> None:
        for note_id, note in self._notes.items():
            if note_id not in self._lines:
                self._lines[note_id] = encoded(model.to_line(note))
        lines = [self._lines[r.id] for r in self.records if r.id in self._notes] + self._foreign
        handle = tempfile.NamedTemporaryFile("wb", dir=self.out.parent, prefix=f".{self.out.name}.", suffix=".tmp",
                                             delete=False)
        try:
            with handle:
                handle.write(b"".join(lines))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, self.out)
        except BaseException:
            Path(handle.name).unlink(missing_ok=True)
            raise
        directory = os.open(self.out.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._signature = self._stat()
