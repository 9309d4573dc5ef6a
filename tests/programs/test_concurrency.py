"""Within-note concurrency (programs.concurrency): a note's independent stage calls run at once
within the `--threads` budget and give the codes and the trace of a sequential run, in the same
order; the budget bounds the threads at work; a failure is raised in item order."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from data.records import NoteRecord
from programs.batch import code_note, run_batch
from programs.concurrency import Budget, Feed, in_order
from programs.lm import make_lm
from programs.registry import build_program
from tests.programs.scripted_server import ECHO_SCRIPT, ScriptedServer
from tests.programs.synthetic import problem_note


class Tracked:
    """A function that notes how many calls run at once and on which threads."""

    def __init__(self, pause: float = 0.02, fail: dict[int, float] | None = None):
        self.pause, self.fail = pause, fail or {}
        self.at_once = self.most = 0
        self.started: list[int] = []
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, item: int) -> int:
        with self.lock:
            self.started.append(item)
            self.threads.add(threading.current_thread().name)
            self.at_once += 1
            self.most = max(self.most, self.at_once)
        try:
            if item in self.fail:
                time.sleep(self.fail[item])
                raise ValueError(f"item {item}")
            time.sleep(self.pause)
            return item * item
        finally:
            with self.lock:
                self.at_once -= 1


def test_without_a_budget_items_run_one_after_the_other_on_the_calling_thread():
    fn = Tracked()
    assert in_order(fn, range(5)) == [0, 1, 4, 9, 16]
    assert fn.most == 1 and fn.threads == {threading.current_thread().name}


def test_within_a_budget_items_run_at_once_in_order_and_bounded():
    fn, budget = Tracked(), Budget(3)
    with budget.note():
        assert in_order(fn, range(12)) == [i * i for i in range(12)]
        assert in_order(fn, range(12), concurrent=False) == [i * i for i in range(12)]
    budget.close()
    assert fn.most == 3, "the note's thread and two helpers, no more"


def test_the_first_failure_in_item_order_is_raised_and_nothing_starts_after_it():
    fn, budget = Tracked(pause=0.05, fail={1: 0.15, 2: 0.0}), Budget(3)
    with budget.note(), pytest.raises(ValueError, match="item 1"):
        in_order(fn, range(8))
    budget.close()
    assert sorted(fn.started) == [0, 1, 2]


def test_helpers_only_take_free_slots():
    budget, fn = Budget(2), Tracked(pause=0.05)
    other_note = threading.Event()
    release = threading.Event()

    def hold():
        with budget.note():
            other_note.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    other_note.wait(5)
    with budget.note():
        assert in_order(fn, range(4)) == [0, 1, 4, 9]
    release.set()
    holder.join()
    budget.close()
    assert fn.most == 1, "both slots held by notes: no helper"


def test_a_feed_gives_back_every_item_once_as_it_finishes_and_submits_a_few_ahead():
    started: list[int] = []

    def square(n: int) -> int:
        started.append(n)
        time.sleep(0.3 if n == 0 else 0.001)
        return n * n

    with ThreadPoolExecutor(max_workers=3) as pool:
        given = [(item, future.result()) for item, future in Feed(pool, square, range(40), ahead=5)]
    assert sorted(given) == [(n, n * n) for n in range(40)]
    assert given[-1][0] == 0, "the slow first item comes back last"

    started.clear()
    with ThreadPoolExecutor(max_workers=2) as pool:
        feed = Feed(pool, square, range(1, 1000), ahead=4)
        given = []
        for item, _ in feed:
            given.append(item)
            if len(given) == 3:
                feed.stop()
    assert len(started) <= 3 + 4 and sorted(given) == sorted(started), "after stop(), only what had started ends"


def test_ctrl_c_in_a_feed_gives_back_the_running_items_then_raises_keyboard_interrupt():
    """SIGINT is sent to this process while the loop is at its third item: the loop body is not
    interrupted; the items running then come back, then the loop raises KeyboardInterrupt, and
    Ctrl-C raises at once again afterwards."""
    started: list[int] = []

    def slow(n: int) -> int:
        started.append(n)
        time.sleep(0.05)
        return n

    given: list[int] = []
    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(KeyboardInterrupt):
        for item, _ in Feed(pool, slow, range(1000), ahead=4):
            if len(given) == 2:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.2)  # the handler runs here; KeyboardInterrupt would too
            given.append(item)
    assert 3 < len(given) <= 3 + 4 and sorted(given) == sorted(started), "the running items came back, no more started"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.parametrize("name", ["medcoder", "clh", "verify"])
def test_a_notes_calls_at_once_give_the_codes_and_trace_of_a_sequential_run(kb, name):
    program = build_program(name, kb)
    note = problem_note(7, problems=4)
    with ScriptedServer(ECHO_SCRIPT, delay=0.3) as server:
        lm = make_lm("scripted", server.url, cache=False, num_retries=0)
        sequential = code_note(program, note, lm)
        alone, server.most_at_once = server.most_at_once, 0
        budget = Budget(4)
        concurrent = code_note(program, note, lm, budget)
        budget.close()
    assert alone == 1 and server.most_at_once >= 3, "one call at a time, then the note's independent calls at once"
    assert concurrent.to_dict() == sequential.to_dict()
    assert len(concurrent.codes) >= 3 and concurrent.usage


def calls_at_once(program, records, output, threads: int, delay: float) -> int:
    """The most calls the scripted server answered at once while `run_batch` coded `records`."""
    with ScriptedServer(ECHO_SCRIPT, delay=delay) as server:
        run_batch(program, records, output, make_lm("scripted", server.url, cache=False, num_retries=0), threads=threads)
    return server.most_at_once


def test_a_batch_with_more_threads_writes_the_lines_of_one_thread(kb, tmp_path):
    program = build_program("medcoder", kb)
    records = [NoteRecord(f"n{i}", problem_note(i, problems=4), ()) for i in range(3)]
    assert calls_at_once(program, records, tmp_path / "one.jsonl", threads=1, delay=0.1) == 1
    assert calls_at_once(program, records, tmp_path / "eight.jsonl", threads=8, delay=0.1) > 3, \
        "more calls at once than notes: a note's re-ranks at once"
    one = sorted((tmp_path / "one.jsonl").read_text().splitlines())
    assert one == sorted((tmp_path / "eight.jsonl").read_text().splitlines()) and len(one) == 3


def test_a_batch_codes_as_many_notes_at_once_as_it_has_threads(kb, tmp_path):
    program = build_program("medcoder", kb)
    records = [NoteRecord(f"n{i}", problem_note(i, problems=1), ()) for i in range(8)]
    # a note of one problem is one call after another (extract, then its re-rank): only notes
    # coded at once make calls at once
    assert calls_at_once(program, records, tmp_path / "four.jsonl", threads=4, delay=0.2) == 4
    assert len((tmp_path / "four.jsonl").read_text().splitlines()) == 8
