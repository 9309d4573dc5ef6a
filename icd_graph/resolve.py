"""Resolve the codes printed in the index and tables against the tabular list, and derive
the index edges of the expansion graph. Both steps run inside the knowledge-base connection."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import NamedTuple

import duckdb

MAX_LINKED_CODES = 50
GENERIC_REFERENCES = frozenset({"condition"})
_UNSPECIFIED = frozenset({"nec", "nos"})

_RAW_CODES = """
SELECT code FROM index_terms WHERE code IS NOT NULL
UNION SELECT manif FROM index_terms WHERE manif IS NOT NULL
UNION SELECT code FROM table_cells WHERE code IS NOT NULL
"""

# 'E11.31-' -> 'E11.31', 'D24.-' -> 'D24', '[F02.80]' -> 'F02.80', 'e119' -> 'E11.9'.
_NORMALISED = """
CREATE TEMP TABLE raw_codes AS
WITH raw AS (SELECT code AS raw_code FROM ({raw})),
cleaned AS (
    SELECT raw_code, rtrim(regexp_replace(upper(raw_code), '[\\[\\]\\s]', '', 'g'), '.-') AS norm FROM raw
)
SELECT raw_code,
       CASE WHEN strpos(norm, '.') = 0 AND length(norm) > 3 THEN norm[1:3] || '.' || norm[4:] ELSE norm END AS norm
FROM cleaned
"""

_RESOLVED = """
INSERT INTO index_codes
WITH billable AS (
    SELECT r.raw_code, n.code, 'billable' AS status
    FROM raw_codes r JOIN nodes n ON n.code = r.norm AND n.billable
),
completed AS (
    SELECT r.raw_code, d.code, 'completed' AS status
    FROM raw_codes r
    JOIN nodes n ON n.code = r.norm AND NOT n.billable
    JOIN ancestors a ON a.ancestor = n.code
    JOIN nodes d ON d.code = a.code AND d.billable
),
known AS (SELECT * FROM billable UNION ALL SELECT * FROM completed)
SELECT * FROM known
UNION ALL
SELECT raw_code, NULL, 'unknown' FROM raw_codes WHERE raw_code NOT IN (SELECT raw_code FROM known)
"""

_REPORT = """
INSERT INTO build_report
SELECT 'index codes ' || s.status, count(DISTINCT c.raw_code)
FROM (VALUES ('billable', 1), ('completed', 2), ('unknown', 3)) s(status, rank)
LEFT JOIN index_codes c USING (status)
GROUP BY s.status, s.rank ORDER BY s.rank
"""


def resolve_codes(con: duckdb.DuckDBPyConnection) -> None:
    """Fill `index_codes` from every code printed in `index_terms` and `table_cells`.

    A billable code maps to itself; an incomplete code ('E11.31-') or one that is now a parent
    ('G35') maps to each billable descendant ('completed'); a code missing from the tabular
    list gets one row with code NULL ('unknown'). The distinct printed codes of each status are
    counted in `build_report` ('index codes billable' / 'completed' / 'unknown').
    """
    con.execute(_NORMALISED.format(raw=_RAW_CODES))
    con.execute(_RESOLVED)
    con.execute(_REPORT)
    con.execute("DROP TABLE raw_codes")


# The billable codes of each term, grouped by table column (0 outside the tables).
_TERM_CODES = """
CREATE TEMP TABLE term_codes AS
SELECT DISTINCT term_id, column_no, code FROM (
    SELECT t.id AS term_id, 0 AS column_no, c.code
    FROM index_terms t JOIN index_codes c ON c.raw_code = t.code
    UNION ALL
    SELECT t.id, 0, c.code FROM index_terms t JOIN index_codes c ON c.raw_code = t.manif
    UNION ALL
    SELECT cell.term_id, cell.column_no, c.code
    FROM table_cells cell JOIN index_codes c ON c.raw_code = cell.code
) WHERE code IS NOT NULL
"""

_GROUP_SIZES = """
CREATE TEMP TABLE term_groups AS
SELECT term_id, column_no, count(*) AS size FROM term_codes GROUP BY ALL
"""

# Each coded term with its nearest coded ancestor ('Diabetes, type 2, with, retinopathy' ->
# 'Diabetes, type 2': the 'with' in between prints no code).
_CODED_PARENTS = """
CREATE TEMP TABLE coded_parents AS
WITH RECURSIVE coded AS (SELECT DISTINCT term_id AS id FROM term_codes),
up(id, ancestor) AS (
    SELECT t.id, t.parent_id FROM index_terms t JOIN coded USING (id) WHERE t.parent_id IS NOT NULL
    UNION ALL
    SELECT up.id, t.parent_id FROM up JOIN index_terms t ON t.id = up.ancestor
    WHERE t.parent_id IS NOT NULL AND up.ancestor NOT IN (SELECT id FROM coded)
)
SELECT id, ancestor FROM up WHERE ancestor IN (SELECT id FROM coded)
"""

# Two 7-character codes are linked only when their 7th characters agree (A with A, S with S).
_SAME_SEVENTH = (
    "NOT (length(replace(x.code, '.', '')) = 7 AND length(replace(y.code, '.', '')) = 7"
    " AND right(x.code, 1) <> right(y.code, 1))"
)

_PATH_EDGES = """
INSERT INTO new_edges
SELECT x.code, y.code, 'index_path'
FROM coded_parents p
JOIN term_groups gx ON gx.term_id = p.id
JOIN term_groups gy ON gy.term_id = p.ancestor AND gy.column_no = gx.column_no
JOIN term_codes x ON x.term_id = gx.term_id AND x.column_no = gx.column_no
JOIN term_codes y ON y.term_id = gy.term_id AND y.column_no = gy.column_no
WHERE gx.size + gy.size <= $max AND {same_seventh}
UNION ALL
SELECT x.code, y.code, 'index_path'
FROM index_terms t
JOIN index_codes x ON x.raw_code = t.code
JOIN index_codes y ON y.raw_code = t.manif
WHERE x.code IS NOT NULL AND y.code IS NOT NULL AND {same_seventh}
"""

_SEE_EDGES = """
INSERT INTO new_edges
WITH refs AS (
    SELECT unnest($term_ids::INTEGER[]) AS term_id, unnest($target_ids::INTEGER[]) AS target_id,
           unnest($columns::INTEGER[][]) AS columns
),
targets AS (
    SELECT r.term_id, r.target_id, c.code
    FROM refs r JOIN term_codes c ON c.term_id = r.target_id
    WHERE len(r.columns) = 0 OR list_contains(r.columns, c.column_no)
),
sources AS (
    SELECT DISTINCT c.term_id, c.code FROM term_codes c WHERE c.term_id IN (SELECT term_id FROM refs)
),
sizes AS (
    SELECT r.term_id, r.target_id,
           (SELECT count(DISTINCT code) FROM sources s WHERE s.term_id = r.term_id)
           + (SELECT count(DISTINCT code) FROM targets t WHERE t.term_id = r.term_id AND t.target_id = r.target_id)
           AS size
    FROM (SELECT DISTINCT term_id, target_id FROM refs) r
)
SELECT x.code, y.code, 'see'
FROM sizes z
JOIN sources x ON x.term_id = z.term_id
JOIN targets y ON y.term_id = z.term_id AND y.target_id = z.target_id
WHERE z.size <= $max AND {same_seventh}
"""


def index_edges(con: duckdb.DuckDBPyConnection, max_linked_codes: int = MAX_LINKED_CODES) -> None:
    """Add undirected `graph_edges` between billable codes that the index ties together
    (run `resolve_codes` first: edges join codes through `index_codes`).

    'index_path': the codes of a term and those of its nearest coded ancestor (column by
    column in the tables), and a term's code with its manifestation code. 'see': the codes of
    a term with a see / see-also reference and the codes of the term it names. Pairs that
    would link more than `max_linked_codes` codes are skipped; edges are stored once
    (a < b) per kind, without self loops.
    """
    con.execute("CREATE TEMP TABLE new_edges (a VARCHAR, b VARCHAR, kind VARCHAR)")
    con.execute(_TERM_CODES)
    con.execute(_GROUP_SIZES)
    con.execute(_CODED_PARENTS)
    con.execute(_PATH_EDGES.format(same_seventh=_SAME_SEVENTH), {"max": max_linked_codes})
    references = see_references(con)
    if references:
        con.execute(
            _SEE_EDGES.format(same_seventh=_SAME_SEVENTH),
            {
                "term_ids": [r.term_id for r in references],
                "target_ids": [r.target_id for r in references],
                "columns": [list(r.columns) for r in references],
                "max": max_linked_codes,
            },
        )
    con.execute(
        """
        INSERT INTO graph_edges
        SELECT DISTINCT least(a, b), greatest(a, b), kind FROM new_edges WHERE a <> b
        EXCEPT SELECT a, b, kind FROM graph_edges
        """
    )
    for table in ("new_edges", "term_codes", "term_groups", "coded_parents"):
        con.execute(f"DROP TABLE {table}")


class Reference(NamedTuple):
    """A see / see-also reference resolved to a term; `columns` limits a table term's cells."""

    term_id: int
    target_id: int
    columns: tuple[int, ...]


class _Term(NamedTuple):
    id: int
    source: str
    parent_id: int | None
    title: str


def see_references(con: duckdb.DuckDBPyConnection) -> list[Reference]:
    """Resolve every see / see-also of `index_terms` to the deepest term its path reaches.

    'Diabetes, type 2' reaches the main term 'Diabetes, diabetic' then its subterm 'type 2';
    a reference whose main term is found but not the rest links to the deepest term reached.
    The referring source is searched first; another source wins when it reaches deeper, or as
    deep with codes where the first has none ('Neoplasm, skin, benign' from the index reaches
    the Table of Neoplasms). Words left over that name table columns ('benign') keep only those
    columns. The instruction 'see also condition' names no term and is skipped.
    """
    rows = con.execute("SELECT id, source, parent_id, title, see, see_also FROM index_terms").fetchall()
    coded = {
        term_id
        for (term_id,) in con.execute(
            "SELECT id FROM index_terms WHERE code IS NOT NULL OR manif IS NOT NULL UNION SELECT term_id FROM table_cells"
        ).fetchall()
    }
    column_names = defaultdict(list)
    for table, column_no, name in con.execute("SELECT DISTINCT table_name, column_no, column_name FROM table_cells").fetchall():
        column_names[table].append((column_no, name.lower()))
    tree = _TermTree([_Term(*row[:4]) for row in rows], coded)
    references = []
    for term_id, source, _, _, see, see_also in rows:
        for text in (see, see_also):
            if not text or _key(text) in GENERIC_REFERENCES:
                continue
            found = tree.find(text, source)
            if found and found[0].id != term_id:
                target, leftover = found
                columns = _columns_named(leftover, column_names.get(target.source, []))
                references.append(Reference(term_id, target.id, columns))
    return references


def _key(text: str) -> str:
    """Lower case, without parenthesised parts, NEC or NOS: 'Cyanide(s)' -> 'cyanide',
    'skin NOS' -> 'skin'."""
    return " ".join(word for word in re.sub(r"\([^)]*\)", " ", text.lower()).split() if word not in _UNSPECIFIED)


class _TermTree:
    """Terms by source and parent, under their title and their title's first comma part
    ('Diabetes, diabetic' is also 'diabetes')."""

    def __init__(self, terms: list[_Term], coded: set[int]) -> None:
        self.children: dict[tuple[str, int | None], dict[str, list[_Term]]] = defaultdict(lambda: defaultdict(list))
        for term in terms:
            children = self.children[(term.source, term.parent_id)]
            children[_key(term.title)].append(term)
            alias = _key(term.title.split(",")[0])
            if alias != _key(term.title):
                children[alias].append(term)
        self.coded = coded
        self.sources = sorted({term.source for term in terms})

    def find(self, reference: str, source: str) -> tuple[_Term, list[str]] | None:
        """The deepest term `reference` reaches and its unmatched parts."""
        parts = [_key(part) for part in reference.split(",") if _key(part)]
        found = [self._walk(s, None, parts) for s in [source] + [s for s in self.sources if s != source]]
        ranked = [(self._rank(f), order, f) for order, f in enumerate(found) if f]
        return min(ranked)[2] if ranked else None

    def _rank(self, found: tuple[_Term, list[str]]) -> tuple[int, bool]:
        return len(found[1]), found[0].id not in self.coded

    def _walk(self, source: str, node: _Term | None, parts: list[str]) -> tuple[_Term, list[str]] | None:
        best = (node, parts) if node else None
        children = self.children.get((source, node.id if node else None), {})
        for size in range(len(parts), 0, -1):
            for child in children.get(", ".join(parts[:size]), ()):
                found = self._walk(source, child, parts[size:])
                if found and (best is None or self._rank(found) < self._rank(best)):
                    best = found
        return best


def _columns_named(words: list[str], columns: list[tuple[int, str]]) -> tuple[int, ...]:
    return tuple(sorted({no for no, name in columns for word in words if word in name}))
