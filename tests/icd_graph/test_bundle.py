"""A knowledge base as one value (icd_graph.bundle), for Ray workers that cannot read the
driver's disk: packed from the real files, written back once per content, usable as the
original, also when several processes write it back at once; preloading in the background."""

from __future__ import annotations

import shutil
import threading

import pytest

from icd_graph.bundle import DB_NAME, pack, unpack
from icd_graph.errors import DatabaseMissing
from icd_graph.kb import KnowledgeBase


@pytest.fixture(scope="module")
def bundle(kb_path):
    return pack(kb_path)


def test_the_unpacked_copy_answers_as_the_original(kb, bundle, tmp_path):
    assert DB_NAME in bundle.files and any(name.startswith(f"{DB_NAME}.bm25/") for name in bundle.files)
    copy = unpack(bundle, tmp_path)
    assert copy.parent.name == bundle.digest
    with KnowledgeBase(copy) as unpacked:
        for query in ("type 2 diabetes with retinopathy", "right hip osteoarthritis"):
            assert unpacked.search(query, k=10) == kb.search(query, k=10)
        assert unpacked.release == kb.release


def test_written_once_per_content_even_by_writers_at_once(bundle, tmp_path):
    found: list = []
    writers = [threading.Thread(target=lambda: found.append(unpack(bundle, tmp_path))) for _ in range(4)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert len(set(found)) == 1 and found[0].is_file()
    assert [p.name for p in tmp_path.iterdir()] == [bundle.digest], "no staging folder left behind"
    stamp = found[0].stat().st_mtime_ns
    assert unpack(bundle, tmp_path) == found[0] and found[0].stat().st_mtime_ns == stamp


def test_another_content_has_another_digest(kb_path, bundle, tmp_path):
    copy = tmp_path / "other.duckdb"
    shutil.copyfile(kb_path, copy)
    shutil.copytree(kb_path.with_name(kb_path.name + ".bm25"), tmp_path / "other.duckdb.bm25")
    (tmp_path / "other.duckdb.bm25" / "codes.json").write_text("[]")
    assert pack(copy).digest != bundle.digest


def test_preload_loads_in_the_background_and_a_missing_index_fails_at_first_use(kb, kb_path, tmp_path):
    with KnowledgeBase(kb_path) as fresh:
        fresh.preload(("search", "index")).join()
        assert fresh.search("essential hypertension", k=3) == kb.search("essential hypertension", k=3)
    lonely = tmp_path / "lonely.duckdb"
    shutil.copyfile(kb_path, lonely)
    with KnowledgeBase(lonely) as broken:
        broken.preload().join()
        with pytest.raises(DatabaseMissing, match="no search index"):
            broken.search("hypertension")


def test_preload_after_another_load_waits_for_it(kb_path):
    gate = threading.Event()
    first = threading.Thread(target=gate.wait)
    first.start()
    with KnowledgeBase(kb_path) as fresh:
        loading = fresh.preload(("search",), after=first)
        loading.join(timeout=3)
        assert loading.is_alive() and fresh._searcher is None, "the search loads only once `after` is done"
        gate.set()
        loading.join()
        assert fresh._searcher is not None
