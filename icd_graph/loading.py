"""Loading what a process keeps for its life (modules, the knowledge base's tables, the
extractor's pipeline) with Python's cyclic garbage collector paused.

A load allocates hundreds of thousands of objects that all live to the end, and the collector,
triggered every 700 allocations, scans them again and again while they are made: a fifth of
importing spaCy and medspaCy, a tenth of importing DSPy. Paused during the load and then frozen
(`gc.freeze`: moved where later collections do not look), they are scanned never. Reference
counting still frees what the load drops; only garbage in cycles made during the load stays."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_active = 0
_resume = False


@contextmanager
def loading() -> Iterator[None]:
    """Pauses the collector for the block; loads on several threads at once resume it when the
    last one ends (and only if it ran before the first began)."""
    global _active, _resume
    with _lock:
        if _active == 0:
            _resume = gc.isenabled()
            gc.disable()
        _active += 1
    try:
        yield
    finally:
        with _lock:
            _active -= 1
            if _active == 0:
                gc.freeze()
                if _resume:
                    gc.enable()
