"""The extractor's read-ahead process on real ACI-BENCH notes: its answers are the extractor's
own, whatever order the notes are asked in; a note it will not answer never waits; a process
that dies or is closed leaves the notes to the extractor of this process; it is forked only
from a process with no other thread, and a forked one ends with the command."""

from __future__ import annotations

import csv
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from programs.extractor import ProblemExtractor
from programs.read_ahead import ReadAhead, reading_ahead, start_method

NAME = "icd-read-ahead"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def notes() -> list[str]:
    with (Path(os.environ["ACI_BENCH_DIR"]) / "train.csv").open(encoding="utf-8") as handle:
        return [row["note"] for row in csv.DictReader(handle)][:12]


@pytest.fixture(scope="module")
def extract() -> ProblemExtractor:
    return ProblemExtractor()


def running() -> list[multiprocessing.Process]:
    return [child for child in multiprocessing.active_children() if child.name == NAME]


def test_answers_are_the_extractors_own_in_any_order(notes, extract):
    batch = [*notes, notes[3]]  # a note twice is answered twice
    asked = random.Random(3).sample(batch, len(batch))
    with ReadAhead() as ahead:
        ahead.read(batch)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ahead.problems, asked))
    assert answers == [extract.extract(note) for note in asked]
    assert all(answers) and not running()


def test_a_note_it_was_not_given_does_not_wait(notes):
    with ReadAhead() as ahead:
        assert ahead.problems(notes[0]) is None, "before read"
        ahead.read(notes[:2])
        assert ahead.problems("ASSESSMENT AND PLAN\n\n1. Asthma.") is None
        assert ahead.problems(notes[0]) is not None
        assert ahead.problems(notes[0]) is None, "answered once, taken once"


def test_a_killed_process_leaves_the_notes_to_the_extractor(notes, extract):
    extractor = ProblemExtractor()
    with reading_ahead(extractor) as ahead:
        ahead.read(notes)
        assert extractor(notes[0]) == extract.extract(notes[0])
        [process] = running()
        process.kill()
        process.join()
        assert ahead.problems(notes[-1]) is None
        assert [extractor(note) for note in notes[1:]] == [extract.extract(note) for note in notes[1:]]
    assert extractor.ahead is None


def test_while_reading_ahead_the_extractor_preloads_nothing(notes):
    extractor = ProblemExtractor()
    with reading_ahead(extractor):
        assert extractor.preload() is None
    assert not running()
    loading = extractor.preload()
    loading.join()
    assert extractor.load()


def test_without_a_process_to_be_had_the_extractor_reads_here(notes, extract, monkeypatch):
    spawn = multiprocessing.get_context("spawn")

    class NoProcesses:
        def __getattr__(self, name):
            return getattr(spawn, name)

        def Process(self, *args, **kwargs):  # noqa: N802 - multiprocessing's name
            raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("programs.read_ahead.multiprocessing.get_context", lambda method: NoProcesses())
    extractor = ProblemExtractor()
    with reading_ahead(extractor) as ahead:
        assert ahead is None and extractor.ahead is None
        assert extractor(notes[0]) == extract.extract(notes[0])


def test_it_forks_only_a_process_with_no_other_thread():
    alone = subprocess.run([sys.executable, "-c", "from programs.read_ahead import start_method; print(start_method())"],
                           cwd=REPO, capture_output=True, text=True, check=True)
    assert alone.stdout.strip() == ("fork" if sys.platform == "linux" else "spawn")
    waiting = threading.Event()
    other = threading.Thread(target=waiting.wait)
    other.start()
    try:
        assert start_method() == "spawn"
    finally:
        waiting.set()
        other.join()


FORKED = """
import time
from programs.read_ahead import ReadAhead, start_method
assert start_method() == "fork"
ahead = ReadAhead()
notes = [f"ASSESSMENT AND PLAN\\n\\n1. Asthma, visit {n}." for n in range(5000)]
ahead.read(notes)
assert ahead.problems(notes[0])
print(ahead._process.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the read-ahead process is forked on Linux only")
def test_a_forked_process_ends_when_the_command_is_killed():
    """The forked process holds no copy of the command's ends of its pipes: killed outright
    (SIGKILL, no clean-up) with thousands of notes still to read, the command leaves it a pipe
    with no reader for its next answer, so it ends at once, not after the notes."""
    command = subprocess.Popen([sys.executable, "-c", FORKED], cwd=REPO, stdout=subprocess.PIPE, text=True)
    child = int(command.stdout.readline())
    command.kill()
    command.wait()
    for _ in range(200):
        stat = Path(f"/proc/{child}/stat")
        if not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.05)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the read-ahead process outlived the command")
