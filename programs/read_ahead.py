"""The problem extractor's reading of a batch of notes, done ahead in a process of its own.

The extractor costs a short run most of its start-up (importing spaCy and medspaCy and building
the pipeline, about 1.2 s) and every note a few tens of milliseconds, all of it holding the
interpreter's lock that the threads waiting on the LM need. `ReadAhead` starts a second process
that loads the pipeline and extracts the batch's notes in order while this one imports DSPy and
loads the knowledge base: on two cores the first LM call is made about a second sooner, and
extracting a note costs this process nothing. The answers are `ProblemExtractor`'s own (same
code, deterministic). A note the process does not answer (not in the batch, its extraction
failed, the process is gone) is extracted in this process instead, so nothing depends on it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from programs.extractor import Problem, ProblemExtractor


class ReadAhead:
    """A process that loads the extractor as soon as it starts and extracts the notes given to
    `read`, in their order; `problems(note)` waits for a note's answer. Close it (or use it as a
    context manager) to stop the process."""

    def __init__(self):
        self._order: list[str] = []
        self._pending: Counter[str] = Counter()
        self._ready: dict[str, deque[list[Problem]]] = {}
        self._done = True
        self._changed = threading.Condition()
        self._threads: list[threading.Thread] = []
        method = start_method()
        context = multiprocessing.get_context(method)
        notes_in, self._notes = context.Pipe(duplex=False)
        self._answers, answers_out = context.Pipe(duplex=False)
        inherited = (self._notes, self._answers) if method == "fork" else ()
        self._process = context.Process(target=_serve, args=(notes_in, answers_out, inherited), name="icd-read-ahead",
                                        daemon=True)
        self._process.start()
        notes_in.close()
        answers_out.close()

    def read(self, notes: Sequence[str]) -> None:
        """Has the process extract `notes` (once per ReadAhead)."""
        if self._threads:
            raise RuntimeError("a ReadAhead reads one batch")
        with self._changed:
            self._order = list(notes)
            self._pending = Counter(self._order)
            self._done = False
        self._threads = [threading.Thread(target=self._feed, name="icd-read-ahead-feed", daemon=True),
                         threading.Thread(target=self._collect, name="icd-read-ahead-collect", daemon=True)]
        for thread in self._threads:
            thread.start()

    def problems(self, note: str) -> list[Problem] | None:
        """The problems of `note` once the process has read them; None when it will not (the
        note is not in the batch, or its extraction failed there, or the process is gone)."""
        with self._changed:
            while not self._ready.get(note) and self._pending[note] > 0 and not self._done:
                self._changed.wait()
            waiting = self._ready.get(note)
            return waiting.popleft() if waiting else None

    def close(self) -> None:
        """Stops the process; the notes it has not answered are extracted here."""
        self._process.terminate()
        self._process.join()
        for thread in self._threads:  # they end at the closed pipes
            thread.join()
        for end in (self._notes, self._answers):
            end.close()

    def __enter__(self) -> ReadAhead:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _feed(self) -> None:
        """Sends the notes as fast as the process takes them."""
        try:
            for note in self._order:
                self._notes.send(note)
            self._notes.send(None)
        except (OSError, ValueError):  # closed, or the process is gone
            return

    def _collect(self) -> None:
        """Receives the answers as they come, in the order of the notes, and keeps them until
        asked for (a note's problems are small beside the note, which the batch holds already)."""
        try:
            for note in self._order:
                try:
                    answer = self._answers.recv()
                except (EOFError, OSError, ValueError):  # the process is gone, or closed
                    return
                with self._changed:
                    self._pending[note] -= 1
                    if answer is not None:
                        self._ready.setdefault(note, deque()).append(answer)
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._done = True
                self._changed.notify_all()


@contextmanager
def reading_ahead(extractor: ProblemExtractor) -> Iterator[ReadAhead | None]:
    """A started `ReadAhead`; while the block runs, `extractor` takes from it the problems of the
    notes it is given to read. None when no process can be started: the extractor reads here."""
    try:
        started = ReadAhead()
    except OSError:
        yield None
        return
    with started as ahead:
        extractor.ahead = ahead
        try:
            yield ahead
        finally:
            extractor.ahead = None


def start_method() -> str:
    """'fork' on Linux from a process with no other thread, a C library's included (the
    command starts its read-ahead before any): the process starts at once, where 'spawn'
    starts an interpreter that imports the command's module again (about 0.15 s of the
    command's start-up); 'spawn' elsewhere."""
    try:
        alone = sys.platform == "linux" and len(os.listdir("/proc/self/task")) == 1
    except OSError:
        alone = False
    return "fork" if alone else "spawn"


def _serve(notes, answers, inherited) -> None:
    """The process: each note received is answered with its problems, or None when extracting
    it failed (the note's own run then raises the error). Ctrl-C is the parent's to handle. The
    parent's ends of the pipes (`inherited`, when forked) are closed, so that the notes pipe
    ends when the parent does."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for end in inherited:
        end.close()
    extractor = ProblemExtractor()
    extractor.load()
    while True:
        try:
            note = notes.recv()
        except (EOFError, OSError):
            return
        if note is None:
            return
        try:
            found = extractor(note)
        except Exception:  # noqa: BLE001 - the parent extracts the note again and raises there
            found = None
        try:
            answers.send(found)
        except OSError:  # the parent is gone
            return
