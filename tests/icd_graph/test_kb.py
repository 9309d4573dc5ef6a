import threading

import pytest

from icd_graph.errors import DatabaseMissing, IcdError, MalformedCode, UnknownCode
from icd_graph.kb import KnowledgeBase


def test_codes_in_any_spelling(kb):
    assert kb.get("e119").code == kb.get("E11.9").code == "E11.9"
    assert kb.get("W19XXXA").code == "W19.XXXA"
    assert kb.get("E08-E13").kind == "block"
    assert kb.get("U99.99") is None and kb.get("not a code") is None
    with pytest.raises(UnknownCode):
        kb.require("U99.99")
    with pytest.raises(MalformedCode):
        kb.require("12345")
    assert kb.release.fiscal_year == 2026 and kb.release_name() == kb.release.name


def test_inherited_notes(kb):
    notes = kb.notes("E11.9")
    assert any(n.kind == "use_additional_code" and n.source == "E11" and "Z79.4" in n.text for n in notes)
    assert not any(n.source != "E11.9" for n in kb.notes("E11.9", inherited=False))
    assert not any(n.kind == "inclusion_term" and n.source != "E11.9" for n in notes)
    excludes = [n.text for n in kb.notes("I10") if n.kind == "excludes1"]
    assert any("P29.2" in text for text in excludes)
    seventh = [n.text for n in kb.notes("S72.001A") if n.kind == "seventh_character"]
    assert "A: initial encounter for closed fracture" in seventh


def test_hierarchy_expansions(kb):
    def codes(code, kind):
        return [info.code for info in kb.expand(code, kind)]

    assert codes("E11.9", "parent") == ["E11"]
    assert codes("E11.311", "ancestors") == ["E11.31", "E11.3", "E11", "E08-E13", "CH04"]
    siblings = codes("E11.9", "siblings")
    assert "E11.8" in siblings and "E11.9" not in siblings and "E11.A" in siblings
    assert codes("E11.311", "siblings") == ["E11.319"]
    # grandparent E11.3; its other children E11.32-E11.35 and E11.37 have children, E11.36 and
    # E11.39 have none; the cousins are those children (not their own children, E11.3211 ...)
    assert codes("E11.311", "cousins") == [
        "E11.321", "E11.329", "E11.331", "E11.339", "E11.341", "E11.349",
        "E11.351", "E11.352", "E11.353", "E11.354", "E11.355", "E11.359",
        "E11.37X1", "E11.37X2", "E11.37X3", "E11.37X9",
    ]
    assert codes("S72.001A", "cousins") == [f"S72.00{side}{seventh}" for side in "29" for seventh in SEVENTH_FRACTURE]
    assert codes("S72.001", "children")[:2] == ["S72.001A", "S72.001B"]
    assert set(codes("E11.31", "descendants")) == {"E11.311", "E11.319"}
    assert codes("E11.9", "billable") == ["E11.9"]
    # shallowest first: E11.36 and E11.39 are billable one level above E11.311; E11.321 and
    # E11.351 are not billable (the eye is a 7th character), E11.37X1 is
    assert codes("E11.3", "billable")[:7] == ["E11.36", "E11.39", "E11.311", "E11.319", "E11.37X1", "E11.37X2", "E11.37X3"]
    with pytest.raises(ValueError):
        kb.expand("E11.9", "uncles")


SEVENTH_FRACTURE = "ABCDEFGHJKMNPQRS"


def test_expansions_agree_with_the_parent_column_of_the_database(kb, kb_path):
    """Each expansion of a few codes at different depths, recomputed in SQL from `nodes.parent`."""
    import duckdb

    with duckdb.connect(str(kb_path), read_only=True) as con:
        def sql(query, code):
            return [row[0] for row in con.execute(query, {"code": code}).fetchall()]

        parent = "SELECT parent FROM nodes WHERE code = $code"
        grandparent = f"SELECT parent FROM nodes WHERE code = ({parent})"
        queries = {
            "siblings": f"SELECT code FROM nodes WHERE parent = ({parent}) AND code <> $code ORDER BY seq",
            "cousins": f"SELECT n.code FROM nodes n JOIN nodes p ON n.parent = p.code "
                       f"WHERE p.parent = ({grandparent}) AND p.code <> ({parent}) ORDER BY n.seq",
            "children": "SELECT code FROM nodes WHERE parent = $code ORDER BY seq",
            "parent": "SELECT parent FROM nodes WHERE code = $code AND parent IS NOT NULL",
        }
        # the first chapter's nodes sit at the start of the tree: A00-A09's parent is node 0
        for code in ("E11.9", "E11.311", "I10", "S72.001A", "J45.909", "M17.11", "A00-A09", "A00", "A00.0"):
            for kind, query in queries.items():
                assert [info.code for info in kb.expand(code, kind)] == sql(query, code), (code, kind)
    assert [info.code for info in kb.expand("A00.0", "ancestors")] == ["A00", "A00-A09", "CH01"]
    assert len(kb.expand("A00", "cousins")) == 157  # the categories of the other blocks of chapter 1
    for chapter in ("CH01", "CH02"):
        assert kb.expand(chapter, "parent") == kb.expand(chapter, "ancestors") == kb.expand(chapter, "cousins") == []


def test_graph_neighbours(kb):
    one = {info.code for info in kb.expand("E11.319", "neighbors1")}
    assert {"E11.31", "E11.9"} <= one  # hierarchy and index-path edges
    two = {info.code for info in kb.expand("E11.319", "neighbors2")}
    assert "E11.3" in two and not two & one and "E11.319" not in two


def test_validate_and_complete(kb):
    e11 = kb.validate("E11")
    assert e11.valid and not e11.billable and e11.reason == "not billable: category with subcodes"
    assert "E11.9" in e11.completions and e11.completion_count > len(e11.completions) == 20
    fracture = kb.validate("S72.001")
    assert fracture.reason == "needs a 7th character" and fracture.completions[0] == "S72.001A"
    assert kb.validate("w19").reason == "needs a 7th character"
    assert kb.validate("e119").billable and kb.validate("e119").code == "E11.9"
    assert kb.validate("U99.99").reason == "unknown code"
    assert kb.validate("hello").reason == "malformed"
    assert kb.complete("E11.31") == ["E11.311", "E11.319"]


def test_search_sources(kb):
    hits = kb.search("type 2 diabetes with retinopathy", k=10, source="all")
    assert any(h.code.startswith("E11.31") for h in hits)
    assert all(kb.validate(h.code).billable for h in hits)
    tabular = kb.search("type 2 diabetes with retinopathy", k=10, source="tabular")
    assert all(h.code.startswith("E11.3") for h in tabular)
    index = kb.search("essential hypertension", k=5, source="index")
    assert "I10" in [h.code for h in index] and all(h.matched for h in index)
    assert kb.search("", k=5) == []


def test_search_describes_hits_the_same_before_and_after_the_hierarchy_loads(kb_path):
    with KnowledgeBase(kb_path) as fresh:
        before = fresh.search("fracture of neck of right femur", k=10)
        fresh.expand("S72.001A", "parent")
        after = fresh.search("fracture of neck of right femur", k=10)
        assert before == after and len(after) == 10
        assert all(hit.description == fresh.require(hit.code).description for hit in after)
        assert len({hit.description for hit in after}) == 10


def test_index_navigation(kb):
    entries = kb.index_lookup(["Diabetes", "type 2", "with", "retinopathy"])
    assert entries[0].path == "Diabetes, diabetic, type 2, with, retinopathy"
    assert entries[0].billable_codes == ("E11.319",)
    assert all(e.path.startswith(entries[0].path) for e in entries)
    assert {"E11.311", "E11.3211"} <= {c for e in entries for c in e.billable_codes}
    unordered = kb.index_lookup(["retinopathy", "diabetes", "type", "2"])
    assert any("E11.319" in e.billable_codes for e in unordered)
    followed = kb.index_lookup(["Abdominalgia"])
    assert followed[0].see == "Pain, abdominal" and followed[1].path == "Pain, abdominal"
    assert kb.index_lookup(["Zzzyzzx"]) == []


def test_index_navigation_reads_modifiers_and_denied_words_as_a_coder_does(kb):
    # '(essential)' is a nonessential modifier of the main term: the main term covers it, not
    # 'Hypertension, complicating, childbirth, pre-existing, essential' (O10.02)
    assert kb.index_lookup(["Hypertension", "Essential hypertension, above goal."])[0].code == "I10"
    # 'without macular edema' is the subterm 'mild' itself, not its subterm 'with macular edema'
    statement = "Type 2 diabetes mellitus with mild nonproliferative diabetic retinopathy without macular edema"
    assert kb.index_lookup(["Diabetes", statement])[0].code == "E11.329"
    assert kb.index_lookup(["Diabetes", statement.replace("without", "with")])[0].code == "E11.321"


def test_index_navigation_reaches_the_table_of_neoplasms_row_of_the_site(kb):
    adenoma = kb.index_lookup(["Adenoma", "pituitary adenoma"])
    assert adenoma[0].see_also.split() == ["Neoplasm,", "benign,", "by", "site"]
    table = [e for e in adenoma if e.source == "neoplasm"]
    assert [(e.path, e.billable_codes) for e in table] == [("Neoplasm, neoplastic, pituitary, Benign", ("D35.2",))]
    assert adenoma.index(table[0]) == 1
    row = kb.index_lookup(["Neoplasm", "pituitary"])
    assert [e.code for e in row[:6]] == ["C75.1", "C79.89", "D09.3", "D35.2", "D44.3", "D49.7"]
    assert kb.index_lookup(["Neoplasm", "pituitary", "malignant", "secondary"])[0].code in {"C75.1", "C79.89"}


def test_shared_across_threads(kb):
    results = []
    threads = [threading.Thread(target=lambda: results.append(kb.require("I10").code)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["I10"] * 4


@pytest.fixture
def held_hierarchy(monkeypatch) -> threading.Event:
    """The code hierarchy's load waits until the event is set."""
    import icd_graph.kb as kb_module

    gate, real = threading.Event(), kb_module._Hierarchy
    monkeypatch.setattr(kb_module, "_Hierarchy", lambda cursor: gate.wait(30) and real(cursor))
    return gate


def test_a_part_loading_holds_up_no_other_query(kb_path, held_hierarchy):
    """While the code hierarchy loads (0.4 s in a batch), a search of the loaded index and a
    thread's first query answer at once: the first LM calls of a batch do not wait for it."""
    with KnowledgeBase(kb_path) as fresh:
        fresh.search("asthma", k=1)
        loading = fresh.preload(("hierarchy",))
        answers: list = []
        asking = threading.Thread(target=lambda: answers.extend([fresh.search("essential hypertension", k=1)[0].code,
                                                                 fresh.get("E11.9").code]))
        asking.start()
        asking.join(timeout=10)
        held = asking.is_alive()
        held_hierarchy.set()
        loading.join()
        asking.join()
        assert not held and answers == ["I10", "E11.9"], "a query waited for the hierarchy to load"
        assert fresh._nodes is not None and fresh.expand("E11.9", "parent")[0].code == "E11"


def test_closing_waits_for_a_part_loading_from_the_connection(kb_path, held_hierarchy):
    """A command that fails fast (an unreachable model) closes the knowledge base while a part
    still loads: the close waits for it instead of closing a connection in use."""
    fresh = KnowledgeBase(kb_path)
    loading = fresh.preload(("hierarchy",))
    closing = threading.Thread(target=fresh.close)
    closing.start()
    closing.join(timeout=1)
    waited = closing.is_alive()
    held_hierarchy.set()
    loading.join()
    closing.join()
    assert waited and fresh._nodes is not None, "the connection closed under a loading part"


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DatabaseMissing, match="icd build"):
        KnowledgeBase(tmp_path / "none.duckdb")
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    with pytest.raises(DatabaseMissing, match="icd build"):
        KnowledgeBase(bad)


def test_table_rows_closest_first_with_resolved_cells(kb):
    pituitary = kb.table("neoplasm", "pituitary")
    assert pituitary[0].path == "Neoplasm, neoplastic, pituitary"
    assert ("Benign", "D35.2", ("D35.2",)) in pituitary[0].cells
    assert [row.path for row in pituitary].count("Neoplasm, neoplastic, fossa, pituitary") == 1
    renal_pelvis = kb.table("neoplasm", "renal pelvis")[0]
    primary = dict((column, billable) for column, _, billable in renal_pelvis.cells)["Malignant Primary"]
    assert set(primary) >= {"C65.1", "C65.2"}
    acetaminophen = kb.table("drug", "acetaminophen", limit=1)[0]
    assert dict((column, code) for column, code, _ in acetaminophen.cells)["Adverse effect"] == "T39.1X5"
    assert kb.table("drug", "no such drug") == [] and kb.table("drug", "  ") == []


def test_unknown_table_is_an_icd_error(kb):
    with pytest.raises(IcdError, match="unknown table"):
        kb.table("procedures", "knee")


def test_index_paths_name_a_code_in_the_words_of_the_index(kb):
    assert kb.index_paths("I10") == ["Hypertension, hypertensive"]
    assert "Neoplasm, neoplastic, pituitary, Benign" in kb.index_paths("D35.2")
    assert "Fall, falling" in kb.index_paths("W19.XXXA")
    assert kb.index_paths("E11") == []  # a category: the index resolves to billable codes
