import gc
import threading

import pytest

from icd_graph.kb import KnowledgeBase
from icd_graph.loading import loading


@pytest.fixture
def collector():
    """The collector as the test found it, with nothing frozen: put back afterwards."""
    enabled = gc.isenabled()
    gc.unfreeze()
    gc.enable()
    yield
    gc.unfreeze()
    (gc.enable if enabled else gc.disable)()


class Held:
    """Objects in a reference cycle, which only the collector frees."""

    def __init__(self):
        self.me = self


def test_a_load_runs_with_the_collector_paused_and_leaves_what_it_made_frozen(collector):
    with loading():
        assert not gc.isenabled()
        kept = [Held() for _ in range(1000)]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)


def test_garbage_dropped_by_a_load_is_still_freed_by_reference_counting(collector):
    import weakref

    class Plain:
        pass

    with loading():
        dropped = Plain()
        gone = weakref.ref(dropped)
        del dropped
    assert gone() is None


def test_the_collector_resumes_when_the_last_of_concurrent_loads_ends(collector):
    first_in, second_done, states = threading.Event(), threading.Event(), []

    def first():
        with loading():
            first_in.set()
            second_done.wait(10)
            states.append(("first, after the second ended", gc.isenabled()))

    worker = threading.Thread(target=first)
    worker.start()
    first_in.wait(10)
    with loading():
        pass
    states.append(("second ended, first still loading", gc.isenabled()))
    second_done.set()
    worker.join()
    assert states == [("second ended, first still loading", False), ("first, after the second ended", False)]
    assert gc.isenabled()


def test_a_collector_turned_off_before_stays_off(collector):
    gc.disable()
    with loading():
        pass
    assert not gc.isenabled()


def test_an_error_in_a_load_resumes_the_collector(collector):
    with pytest.raises(RuntimeError), loading():
        raise RuntimeError("the part failed to load")
    assert gc.isenabled()


def test_a_knowledge_base_part_loads_with_the_collector_paused(kb_path, collector, monkeypatch):
    """The code hierarchy (a batch's largest load) is made with the collector off; once it is
    loaded, the collector runs again and the hierarchy's objects are frozen."""
    import icd_graph.kb as kb_module

    seen, real = [], kb_module._Hierarchy
    monkeypatch.setattr(kb_module, "_Hierarchy", lambda cursor: seen.append(gc.isenabled()) or real(cursor))
    frozen = gc.get_freeze_count()
    with KnowledgeBase(kb_path) as fresh:
        fresh.preload(("hierarchy",)).join()
        assert fresh.expand("E11.9", "parent")[0].code == "E11"
    assert seen == [False] and gc.isenabled()
    assert gc.get_freeze_count() > frozen + 70_000  # the hierarchy's 98,000 codes, and more
