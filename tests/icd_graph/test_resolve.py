import duckdb
import pytest

from icd_graph.alphabetic import TermRow
from icd_graph.resolve import index_edges, resolve_codes, see_references
from icd_graph.schema import DDL
from icd_graph.tables import CellRow

# (code, parent, billable): a small slice of the tabular list.
NODES = [
    ("E11", None, False),
    ("E11.9", "E11", True),
    ("E11.3", "E11", False),
    ("E11.31", "E11.3", False),
    ("E11.311", "E11.31", True),
    ("E11.319", "E11.31", True),
    ("G35", None, False),
    ("G35.A", "G35", True),
    ("G35.B0", "G35", True),
    ("G20", None, False),
    ("G20.C", "G20", True),
    ("F02", None, False),
    ("F02.8", "F02", False),
    ("F02.80", "F02.8", True),
    ("G31", None, False),
    ("G31.01", "G31", True),
    ("C76", None, False),
    ("C76.2", "C76", True),
    ("D36", None, False),
    ("D36.7", "D36", True),
    ("T51", None, False),
    ("T51.2X1", "T51", False),
    ("T51.3X1", "T51", False),
    *[(f"T51.{n}X1{c}", f"T51.{n}X1", True) for n in (2, 3) for c in "ADS"],
]


def term(id, parent_id, level, path, code=None, manif=None, see=None, see_also=None, source="index", title=None):
    title = title or (path if parent_id is None else path.split(", ")[-1])
    return TermRow(id, source, parent_id, level, title, None, path, code, manif, see, see_also)


TERMS = [
    term(1, None, 0, "Diabetes", "E11.9"),
    term(2, 1, 1, "Diabetes, type 2", "E11.9"),
    term(3, 2, 2, "Diabetes, type 2, with"),
    term(4, 3, 3, "Diabetes, type 2, with, retinopathy", "E11.319"),
    term(5, 3, 3, "Diabetes, type 2, with, eye complication", "E11.31-"),
    term(6, None, 0, "Sclerosis, multiple", "G35"),
    term(7, None, 0, "Dementia, in, Parkinson's disease", "G20.C", manif="F02.80"),
    term(8, None, 0, "Pick's disease", "G31.01", see_also="Dementia, in, Parkinson's disease"),
    term(9, None, 0, "Obsolete", "Z99.999"),
    term(10, None, 0, "Retinopathy", "E11.319", see_also="Diabetes, type 2, with, retinopathy"),
    term(11, None, 0, "Tumor, abdominal", "D36.7", see_also="Neoplasm, abdomen, benign"),
    term(12, None, 0, "Neoplasm, neoplastic", source="neoplasm"),
    term(13, 12, 1, "Neoplasm, neoplastic, abdomen, abdominal", source="neoplasm", title="abdomen, abdominal"),
    term(14, None, 0, "propanol", source="drug"),
    term(15, 14, 1, "propanol, iso", source="drug"),
    term(16, None, 0, "Condition", "E11.9"),
    term(17, None, 0, "Thing", "G20.C", see_also="condition"),
]

CELLS = [
    CellRow(13, "neoplasm", 2, "Malignant Primary", "C76.2"),
    CellRow(13, "neoplasm", 5, "Benign", "D36.7"),
    CellRow(14, "drug", 2, "Poisoning Accidental (unintentional)", "T51.3X1"),
    CellRow(15, "drug", 2, "Poisoning Accidental (unintentional)", "T51.2X1"),
]


def small_kb(nodes=NODES, terms=TERMS, cells=CELLS) -> duckdb.DuckDBPyConnection:
    """An in-memory knowledge base holding only the given nodes, index terms and cells."""
    con = duckdb.connect()
    con.execute(DDL)
    con.executemany("INSERT INTO nodes (code, parent, billable) VALUES (?, ?, ?)", nodes)
    con.execute(
        """
        INSERT INTO ancestors
        WITH RECURSIVE up(code, ancestor, distance) AS (
            SELECT code, parent, 1 FROM nodes WHERE parent IS NOT NULL
            UNION ALL
            SELECT up.code, n.parent, up.distance + 1 FROM up JOIN nodes n ON n.code = up.ancestor
            WHERE n.parent IS NOT NULL
        )
        SELECT * FROM up
        """
    )
    con.executemany(f"INSERT INTO index_terms VALUES ({', '.join('?' * 11)})", terms)
    con.executemany("INSERT INTO table_cells VALUES (?, ?, ?, ?, ?)", cells)
    return con


def resolved(con, raw_code):
    return sorted(con.execute("SELECT code, status FROM index_codes WHERE raw_code = ?", [raw_code]).fetchall(), key=str)


def edges(con, kind):
    return set(con.execute("SELECT a, b FROM graph_edges WHERE kind = ?", [kind]).fetchall())


@pytest.fixture
def con():
    connection = small_kb()
    resolve_codes(connection)
    yield connection
    connection.close()


def test_billable_incomplete_parent_and_unknown_codes(con):
    assert resolved(con, "E11.9") == [("E11.9", "billable")]
    assert resolved(con, "E11.31-") == [("E11.311", "completed"), ("E11.319", "completed")]
    assert resolved(con, "G35") == [("G35.A", "completed"), ("G35.B0", "completed")]
    assert resolved(con, "T51.3X1") == [(f"T51.3X1{c}", "completed") for c in "ADS"]
    assert resolved(con, "F02.80") == [("F02.80", "billable")]
    assert resolved(con, "Z99.999") == [(None, "unknown")]


def test_report_counts_distinct_printed_codes(con):
    report = dict(con.execute("SELECT item, count FROM build_report").fetchall())
    assert report == {"index codes billable": 7, "index codes completed": 4, "index codes unknown": 1}


def test_index_path_links_the_nearest_coded_ancestor_and_the_manifestation(con):
    index_edges(con)
    path = edges(con, "index_path")
    assert ("E11.319", "E11.9") in path  # across the uncoded 'with'
    assert ("E11.311", "E11.9") in path and ("E11.319", "E11.9") in path
    assert ("F02.80", "G20.C") in path
    assert all(a < b for a, b in path)
    assert not any(a == b for a, b in path)


def test_table_edges_pair_equal_seventh_characters(con):
    index_edges(con)
    drug = {(a, b) for a, b in edges(con, "index_path") if a.startswith("T51")}
    assert drug == {(f"T51.2X1{c}", f"T51.3X1{c}") for c in "ADS"}


def test_see_edges_follow_references_and_named_columns(con):
    index_edges(con)
    see = edges(con, "see")
    assert ("F02.80", "G31.01") in see and ("G20.C", "G31.01") in see
    assert ("D36.7", "D36.7") not in see
    assert not any("C76.2" in edge for edge in see)  # 'benign' keeps only the Benign column
    assert not any("E11.9" in edge for edge in see)  # 'see also condition' names no term


def test_see_references_resolve_main_term_alias_and_table():
    con = small_kb()
    references = {(r.term_id, r.target_id, r.columns) for r in see_references(con)}
    assert (8, 7, ()) in references
    assert (11, 13, (5,)) in references
    assert not any(term_id == 17 for term_id, _, _ in references)


def test_terms_linking_too_many_codes_are_skipped(con):
    index_edges(con, max_linked_codes=2)
    path = edges(con, "index_path")
    assert ("E11.319", "E11.9") in path
    assert ("E11.311", "E11.9") not in path  # 'E11.31-' completes to two codes: three in all


def test_real_knowledge_base_resolves_and_links_index_codes(kb_path):
    with duckdb.connect(str(kb_path), read_only=True) as kb:
        report = dict(kb.execute("SELECT item, count FROM build_report").fetchall())
        assert report["index codes billable"] > 10000
        assert report["index codes completed"] > 5000
        assert report["index codes unknown"] < 50
        completed = {code for (code,) in kb.execute("SELECT code FROM index_codes WHERE raw_code = 'G35'").fetchall()}
        assert completed and all(code.startswith("G35.") for code in completed)
        assert not kb.execute(
            "SELECT count(*) FROM index_codes c JOIN nodes n USING (code) WHERE NOT n.billable"
        ).fetchone()[0]
        kinds = dict(kb.execute("SELECT kind, count(*) FROM graph_edges GROUP BY kind").fetchall())
        assert 20000 < kinds["index_path"] < 500000 and kinds["see"] > 500
        assert kb.execute(
            "SELECT count(*) FROM graph_edges WHERE kind = 'index_path' AND a = 'E11.319' AND b = 'E11.9'"
        ).fetchone()[0] == 1
        assert not kb.execute("SELECT count(*) FROM graph_edges WHERE a = b").fetchone()[0]
