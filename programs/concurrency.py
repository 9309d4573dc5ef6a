"""One budget of threads for a run (`--threads`): the notes of a batch and the stage calls of one
note that do not depend on each other (MedCoder's re-ranks, CLH's look-ups, verify's selections)
share it. A note's independent calls run on the budget's free threads at that moment (with none
free, one after the other on the note's own thread) and come back in order, so a note's codes
and trace are those of a sequential run. `Feed` hands a batch's notes to a pool of threads and
gives them back as they finish."""

from __future__ import annotations

import contextvars
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_CURRENT: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("icd_budget", default=None)


class Budget:
    """At most `threads` threads at work at once: the threads coding notes (each holds one
    slot while it codes) and the helpers that run a note's independent stage calls."""

    def __init__(self, threads: int):
        self.threads = max(1, threads)
        self._slots = threading.BoundedSemaphore(self.threads)
        self._helpers: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @contextmanager
    def note(self) -> Iterator[None]:
        """Holds a slot while the calling thread codes a note, with this budget current."""
        with self._slots:
            token = _CURRENT.set(self)
            try:
                yield
            finally:
                _CURRENT.reset(token)

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`[fn(item) for item in items]`, the items shared between the calling thread and as
        many helpers as the budget has free slots. The first failure (in item order) is raised
        once the items already started have finished; no item starts after a failure."""
        results: list = [None] * len(items)
        errors: list[BaseException | None] = [None] * len(items)
        order = iter(range(len(items)))
        taking = threading.Lock()
        failed = threading.Event()

        def work() -> None:
            while True:
                with taking:
                    index = None if failed.is_set() else next(order, None)
                if index is None:
                    return
                try:
                    results[index] = fn(items[index])
                except BaseException as exc:  # re-raised below, in item order
                    errors[index] = exc
                    failed.set()

        def helper() -> None:
            try:
                work()
            finally:
                self._slots.release()

        started = []
        for _ in range(len(items) - 1):
            if not self._slots.acquire(blocking=False):
                break
            started.append(self._pool().submit(contextvars.copy_context().run, helper))
        work()
        for future in started:
            future.result()
        first = next((exc for exc in errors if exc is not None), None)
        if first is not None:
            raise first
        return results

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._helpers is None:
                self._helpers = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="icd-stage")
            return self._helpers

    def close(self) -> None:
        with self._lock:
            if self._helpers is not None:
                self._helpers.shutdown(wait=True)
                self._helpers = None


def in_order(fn: Callable[[T], R], items: Sequence[T], concurrent: bool = True) -> list[R]:
    """`[fn(item) for item in items]`: concurrently within the budget of the note being coded
    (see `Budget.map`); one after the other when not `concurrent` (work that only computes,
    such as the rules with no model, gains nothing from threads), without a budget, or with a
    budget of one thread."""
    budget = _CURRENT.get()
    items = list(items)
    if not concurrent or budget is None or budget.threads == 1 or len(items) < 2:
        return [fn(item) for item in items]
    return budget.map(fn, items)


class Feed(Generic[T, R]):
    """`fn(item)` for each of `items` on `pool`, at most `ahead` items submitted and not yet
    given back; `for item, future in feed` gives each item with its finished future as it
    finishes. `stop()` starts no more items and cancels those not yet started: the loop then
    ends with the items already running. Leaving the loop early stops the feed.

    Ctrl-C during the loop (in the main thread) is a stop: the items running then are still
    given back (a batch saves the notes being coded), and the loop then raises
    KeyboardInterrupt; a second Ctrl-C raises it where the loop is, as Python does. The first is
    not let raise wherever the loop happens to be: a KeyboardInterrupt raised just after a thread
    lock is taken (a future's condition, inside `Future.result` or `add_done_callback`) leaves
    the lock held, the pool thread that finishes that future waits on it forever, and so does
    the command."""

    def __init__(self, pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], ahead: int):
        self._pool, self._fn, self._items, self._ahead = pool, fn, iter(items), max(1, ahead)
        self._finished: queue.SimpleQueue[Future[R] | object] = queue.SimpleQueue()
        self._submitted: dict[Future[R], T] = {}
        self._interrupted = False

    def __iter__(self) -> Iterator[tuple[T, Future[R]]]:
        restore = _on_interrupt(self._interrupt)
        try:
            self._top_up()
            while self._submitted:
                future = self._finished.get()
                if future is _INTERRUPTED:
                    self.stop()
                    restore()
                    continue
                item = self._submitted.pop(future)
                if future.cancelled():
                    continue
                self._top_up()
                yield item, future
        finally:
            self.stop()
            restore()
        if self._interrupted:
            raise KeyboardInterrupt

    def stop(self) -> None:
        self._items = iter(())
        for future in list(self._submitted):
            future.cancel()

    def _interrupt(self, *_) -> None:
        """The SIGINT handler: only a flag and a put on the queue, which is safe in a handler."""
        self._interrupted = True
        self._finished.put(_INTERRUPTED)

    def _top_up(self) -> None:
        while len(self._submitted) < self._ahead:
            item = next(self._items, _END)
            if item is _END:
                return
            future = self._pool.submit(self._fn, item)
            self._submitted[future] = item
            future.add_done_callback(self._finished.put)


def _on_interrupt(handler: Callable[..., None]) -> Callable[[], object]:
    """`handler` for SIGINT in place of KeyboardInterrupt, when this is the main thread and
    SIGINT raises KeyboardInterrupt now; returns what puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return lambda: None
    signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, signal.default_int_handler)


_END = object()
_INTERRUPTED = object()
