"""Read-only queries over one knowledge-base file: codes, inherited notes, hierarchy and graph
expansion, validation and completion, lexical search and alphabetic-index navigation.

A `KnowledgeBase` is safe to share across threads: each thread queries through its own DuckDB
cursor. The expansion graph, the search indexes and the index tree are loaded on first use, or
ahead of it in the background (`preload`).
"""

from __future__ import annotations

import re
import threading
from contextlib import ExitStack
from pathlib import Path

import duckdb

from icd_graph import graph
from icd_graph.codes import normalize, undotted
from icd_graph.errors import DatabaseMissing, IcdError, MalformedCode, UnknownCode
from icd_graph.grammar import CodeGrammar, code_grammar
from icd_graph.loading import loading
from icd_graph.records import CodeInfo, IndexEntry, Note, Release, SearchHit, TableRow, Validation
from icd_graph.schema import SCHEMA_VERSION
from icd_graph.vocabulary import tokenize

EXPANSIONS = (
    "parent", "children", "ancestors", "descendants", "siblings", "cousins",
    "neighbors1", "neighbors2", "billable",
)
MAX_COMPLETIONS = 20
MAX_SEE_DEPTH = 3
GENERIC_REFERENCES = frozenset({"condition"})
_WITHOUT = re.compile(r"\bwithout\b([^,;.]*?)(?=[,;.]|\bwith\b|$)", re.IGNORECASE)
TABLES = ("neoplasm", "drug")
INDEXES = ("index", "eindex")

_CHAPTER_OR_BLOCK = re.compile(r"CH\d\d|[A-Z]\d[0-9A-Z]-[A-Z]\d[0-9A-Z]")
_COLUMN_NAMES = ("code", "description", "kind", "billable", "parent", "depth", "chapter", "block")
_COLUMNS = ", ".join(f"n.{name}" for name in _COLUMN_NAMES)

# Own notes, then those of each ancestor, nearest first. Inclusion terms describe only the
# node that lists them; every other kind (7th characters included) applies to descendants.
_NOTES_SQL = """
WITH lineage AS (
    SELECT $code AS code, 0 AS distance
    UNION ALL SELECT ancestor, distance FROM ancestors WHERE code = $code
)
SELECT n.kind, n.text, n.code FROM notes n JOIN lineage l USING (code)
WHERE l.distance = 0 OR ($inherited AND n.kind <> 'inclusion_term')
ORDER BY l.distance, n.seq
"""


class StaleDatabase(IcdError):
    """A knowledge-base file written with another schema version."""


class KnowledgeBase:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatabaseMissing(f"no knowledge base at {self.path}; run `python cli.py icd build`")
        try:
            self._con = duckdb.connect(str(self.path), read_only=True)
            row = self._con.execute("SELECT name, fiscal_year, schema_version, built_at FROM release").fetchone()
        except duckdb.Error as exc:
            raise DatabaseMissing(
                f"cannot read knowledge base {self.path} ({str(exc).splitlines()[0]}); "
                "rebuild it with `python cli.py icd build`"
            ) from None
        if row is None or row[2] != SCHEMA_VERSION:
            found = row[2] if row else None
            self._con.close()
            raise StaleDatabase(
                f"{self.path} has schema version {found}, this tool needs {SCHEMA_VERSION}; "
                "rebuild it with `python cli.py icd build`"
            )
        sources = self._con.execute("SELECT file_name FROM source_files ORDER BY kind").fetchall()
        self.release = Release(row[0], row[1], str(row[3]), tuple(Path(name).name for (name,) in sources))
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._lock = threading.Lock()
        self._searcher = None
        self._preloading: set[str] = set()
        self._tree = None
        self._nodes = None
        self._loading = {part: threading.Lock() for part in ("_searcher", "_tree", "_nodes")}
        self._tables: dict[str, list] = {}
        self._code_grammar: CodeGrammar | None = None
        self._grammar_lock = threading.Lock()
        self._paths: dict[str, list[str]] | None = None
        self._billable_of: dict[str, list[str]] | None = None
        self._tables_lock = threading.Lock()

    def preload(self, parts: tuple[str, ...] = ("search",), after: threading.Thread | None = None) -> threading.Thread:
        """Starts loading `parts` ('search': lexical and dense, 'index' for the index tree, 'graph',
        'hierarchy') on a daemon thread, so that the first query finds them loaded or waits only
        for the rest; once `after` has finished, if given (loads share the interpreter's lock, so
        what is needed first loads alone). A part that fails to load raises its error at that
        first query instead."""
        loaders = {"search": lambda: self._search().has_dense(), "index": self._index_tree, "graph": self._graph,
                   "hierarchy": self._hierarchy}
        with self._lock:
            todo = [part for part in parts if part not in self._preloading]
            self._preloading.update(todo)

        def load() -> None:
            if after is not None:
                after.join()
            for part in todo:
                try:
                    loaders[part]()
                except Exception:  # noqa: BLE001 - raised again, with its message, where the part is used
                    return

        thread = threading.Thread(target=load, name="icd-kb-preload", daemon=True)
        thread.start()
        return thread

    def __enter__(self) -> KnowledgeBase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection once the parts loading from it have loaded."""
        with ExitStack() as held:
            for lock in (*self._loading.values(), self._lock):
                held.enter_context(lock)
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
            self._con.close()

    def release_name(self) -> str:
        return self.release.name

    # -- codes -----------------------------------------------------------------------------

    def get(self, code: str) -> CodeInfo | None:
        """The node of a code (any spelling `normalize` accepts), chapter ('CH04') or block
        ('E08-E13'); None when unknown or malformed."""
        try:
            return self._lookup(_key(code))
        except MalformedCode:
            return None

    def require(self, code: str) -> CodeInfo:
        """Like `get`, but raising MalformedCode or UnknownCode."""
        key = _key(code)
        info = self._lookup(key)
        if info is None:
            raise UnknownCode(
                f"{key} is not a code of {self.release.name}; "
                f"find one with `python cli.py icd search TEXT` or `icd validate {key}`"
            )
        return info

    def notes(self, code: str, inherited: bool = True) -> list[Note]:
        """The code's own notes, then (if `inherited`) those of its ancestors, nearest first."""
        key = self.require(code).code
        tree = self._nodes
        if tree is None:
            rows = self._rows(_NOTES_SQL, {"code": key, "inherited": inherited})
            return [Note(kind, text, source) for kind, text, source in rows]
        i = tree.position[key]
        lineage = [i] + (tree.expand(i, "ancestors") if inherited else [])
        return [
            Note(kind, text, tree.columns[0][j])
            for j in lineage
            for kind, text in tree.notes.get(j, ())
            if j == i or kind != "inclusion_term"
        ]

    def expand(self, code: str, kind: str) -> list[CodeInfo]:
        """Related nodes of a code, in document order unless said otherwise.

        parent, children; ancestors (nearest first); descendants; siblings (same parent, not the
        code); cousins (same grandparent, another parent); billable (billable codes at or under
        the code, shallowest first); neighbors1 / neighbors2 (graph nodes at exactly 1 / 2 hops
        over hierarchy, index-path and see edges).
        """
        if kind not in EXPANSIONS:
            raise ValueError(f"kind must be one of {', '.join(EXPANSIONS)}; got {kind!r}")
        key = self.require(code).code
        tree = self._hierarchy()
        if kind in ("neighbors1", "neighbors2"):
            found = graph.neighbours(self._graph(), key, int(kind[-1]))
            positions = sorted(tree.position[c] for c in found if c in tree.position)
        else:
            positions = tree.expand(tree.position[key], kind)
        return [tree.info(i) for i in positions]

    def complete(self, code: str) -> list[str]:
        """The billable codes at or under a code, most general (shallowest) first."""
        return [info.code for info in self.expand(code, "billable")]

    def validate(self, code: str) -> Validation:
        """Whether text is a billable code of the release, why not, and how to complete it."""
        try:
            key = _key(code)
        except MalformedCode:
            return Validation(code, None, False, False, "malformed")
        info = self.get(key)
        if info is None:
            return Validation(code, key, False, False, "unknown code")
        if info.billable:
            return Validation(code, key, True, True, "billable", (key,), 1)
        completions = self.complete(key)
        if info.kind in ("chapter", "block"):
            reason = f"not billable: {info.kind} with subcodes"
        elif _needs_seventh(key, completions):
            reason = "needs a 7th character"
        else:
            reason = "not billable: category with subcodes"
        return Validation(code, key, True, False, reason, tuple(completions[:MAX_COMPLETIONS]), len(completions))

    # -- search and the alphabetic index ---------------------------------------------------

    def billable_codes(self) -> list[str]:
        """Every billable code of the release, sorted."""
        return [code for (code,) in self._rows("SELECT code FROM nodes WHERE billable ORDER BY code")]

    def code_grammar(self) -> CodeGrammar:
        """The billable codes as a GBNF grammar (icd_graph.grammar), built on first use."""
        with self._grammar_lock:
            if self._code_grammar is None:
                self._code_grammar = code_grammar(self.billable_codes())
            return self._code_grammar

    def search(self, text: str, k: int = 20, source: str = "all") -> list[SearchHit]:
        """bm25s search: `tabular` (any node), `index`, `dense` (embeddings, with the dense extra
        and vectors built by `icd build --dense`) or `all` (all of them fused; billable codes
        only; without dense vectors, the lexical ones). The ranking is described in
        `icd_graph.search`."""
        matches = self._search().search(text, k=k, source=source)
        descriptions = self._descriptions([m.code for m in matches])
        return [
            SearchHit(m.code, descriptions[m.code], m.score, m.matched or descriptions[m.code], m.source)
            for m in matches
        ]

    def has_dense(self) -> bool:
        """Whether `search` has its dense leg: the dense extra is installed and vectors were built
        for this file (`icd build --dense`); DenseMismatch when the vectors are another build's."""
        return self._search().has_dense()

    def index_lookup(self, terms: list[str], limit: int = 25, index: str | None = None) -> list[IndexEntry]:
        """Navigate the alphabetic index like a coder: a main term, then subterms.

        The main term is the first term that matches a main-term title (case, plurals,
        nonessential modifiers and the second spelling of 'Diabetes, diabetic' ignored), else any
        word of the terms that does. Among the subterms under it, the reached term is the one
        whose path covers most words of the query; ties go to fewer unrequested words, then the
        shallower, then the first term, so an exact path wins and connective levels ('with',
        'due to') are crossed without being named. A reached 'see' reference, and a 'see also'
        when words remain uncovered, are followed (at most MAX_SEE_DEPTH times); a reference to the
        Table of Neoplasms ('see Neoplasm, benign, by site') reaches the row of the site the terms
        name, one entry per column, only the columns the terms or the reference name when they name
        any ('benign').
        Returns the reached term, then the followed references' entries, then the reached term's
        subterms in index order, at most `limit` entries in all. `index` keeps the main terms to
        one index: 'index' (the Alphabetic Index) or 'eindex' (the External Cause Index).
        """
        if index is not None and index not in INDEXES:
            raise IcdError(f"unknown index {index!r}: use one of {', '.join(INDEXES)}")
        tree = self._index_tree()
        reached = tree.navigate([t for t in terms if t and t.strip()], MAX_SEE_DEPTH, index)
        ids: list[int] = reached[:1]
        for term_id in reached[1:] + reached[:1]:
            for member in tree.subtree(term_id):
                if member not in ids:
                    ids.append(member)
                if len(ids) >= limit:
                    break
            if len(ids) >= limit:
                break
        references = [tree.rows[i].see or tree.rows[i].see_also or "" for i in reached]
        wanted = frozenset(tokenize(" ".join([*terms, *references])))
        cells = {i: tree.columns(i, wanted) for i in ids}
        printed = [tree.rows[i].code for i in ids if tree.rows[i].code] + [code for i in ids for _, code in cells[i]]
        resolved = self._resolved(printed)
        entries = []
        for row in (tree.rows[i] for i in ids):
            if row.id not in tree.cells:
                entries.append(IndexEntry(row.path, row.code, row.see, row.see_also, tuple(resolved.get(row.code, ())), row.source))
            entries.extend(
                IndexEntry(f"{row.path}, {column}", code, None, None, tuple(resolved.get(code, ())), row.source)
                for column, code in cells[row.id]
            )
        return entries[:limit]

    def index_paths(self, code: str) -> list[str]:
        """The index terms whose printed code resolves to the billable `code` ('Hypertension,
        hypertensive' for I10), and table rows with the column ('Neoplasm, neoplastic,
        pituitary, Benign' for D35.2), in index order: the words the index uses for it."""
        key = self.require(code).code
        with self._tables_lock:
            if self._paths is None:
                rows = self._rows(
                    """SELECT c.code, t.id, t.path FROM index_codes c JOIN index_terms t ON t.code = c.raw_code
                       UNION SELECT c.code, t.id, t.path || ', ' || tc.column_name FROM index_codes c
                       JOIN table_cells tc ON tc.code = c.raw_code JOIN index_terms t ON t.id = tc.term_id
                       ORDER BY 2, 3"""
                )
                paths: dict[str, list[str]] = {}
                for billable, _, path in rows:
                    if billable is not None:
                        paths.setdefault(billable, []).append(path)
                self._paths = {c: list(dict.fromkeys(found)) for c, found in paths.items()}
        return list(self._paths.get(key, ()))

    def table(self, name: str, term: str, limit: int = 10) -> list[TableRow]:
        """Rows of the Table of Neoplasms (`neoplasm`) or of Drugs and Chemicals (`drug`) whose
        path holds every word of `term` ('pituitary', 'acetaminophen'): the closest first (fewest
        other words, then shallower, then table order), at most `limit`."""
        if name not in TABLES:
            raise IcdError(f"unknown table {name!r}: use one of {', '.join(TABLES)}")
        wanted = frozenset(tokenize(term))
        if not wanted:
            return []
        rows = [row for row in self._table_rows(name) if wanted <= row[1]]
        best = sorted(rows, key=lambda row: (len(row[1] - wanted), row[2], row[0]))[:limit]
        resolved = self._resolved([code for *_, cells in best for _, code in cells])
        return [
            TableRow(name, path, tuple((column, code, tuple(resolved.get(code, ()))) for column, code in cells))
            for _, _, _, path, cells in best
        ]

    # -- internals -------------------------------------------------------------------------

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._lock:
                cursor = self._con.cursor()
                self._cursors.append(cursor)
            self._local.cursor = cursor
        return cursor

    def _rows(self, sql: str, params: dict | None = None) -> list[tuple]:
        return self._cursor().execute(sql, params or {}).fetchall()

    def _lookup(self, key: str) -> CodeInfo | None:
        """From memory once the hierarchy is loaded, else one indexed query (the CLI's path)."""
        tree = self._nodes
        if tree is not None:
            i = tree.position.get(key)
            return tree.info(i) if i is not None else None
        rows = self._rows(f"SELECT {_COLUMNS} FROM nodes n WHERE n.code = $code", {"code": key})
        return _info(rows[0]) if rows else None

    def _graph(self):
        return graph.load_graph(self._cursor(), (self.path.resolve(), self.path.stat().st_mtime_ns))

    def _hierarchy(self) -> _Hierarchy:
        return self._once("_nodes", lambda: _Hierarchy(self._con.cursor()))

    def _search(self):
        def load():
            from icd_graph.dense import dense_dir_for, open_dense
            from icd_graph.search import Searcher

            release = self.release
            return Searcher(self.path.with_name(self.path.name + ".bm25"),
                            lambda: open_dense(dense_dir_for(self.path), release.name, release.built_at))

        return self._once("_searcher", load)

    def _index_tree(self) -> _IndexTree:
        return self._once("_tree", lambda: _IndexTree(self._con.cursor()))

    def _once(self, part: str, load):
        """The part held in attribute `part`, loaded at its first use under a lock of its own: a
        part loading (0.2-0.6 s) holds up neither the queries of a loaded part nor a thread's
        first query."""
        value = getattr(self, part)
        if value is None:
            with self._loading[part]:
                value = getattr(self, part)
                if value is None:
                    with loading():
                        value = load()
                    setattr(self, part, value)
        return value

    def _descriptions(self, codes: list[str]) -> dict[str, str]:
        """From memory once the hierarchy is loaded, else one query (about 4 ms of a search)."""
        tree = self._nodes
        if tree is not None:
            return {code: tree.info(tree.position[code]).description for code in codes}
        rows = self._rows("SELECT code, description FROM nodes WHERE code IN (SELECT unnest($codes))", {"codes": codes})
        return dict(rows)

    def _table_rows(self, name: str) -> list[tuple[int, frozenset[str], int, str, list[tuple[str, str]]]]:
        """(term id, path words, level, path, cells) of every coded row of a table, read once."""
        with self._tables_lock:
            if name not in self._tables:
                rows: dict[int, tuple[int, frozenset[str], int, str, list[tuple[str, str]]]] = {}
                for term_id, path, level, column, code in self._rows(
                    """SELECT t.id, t.path, t.level, c.column_name, c.code FROM table_cells c
                       JOIN index_terms t ON t.id = c.term_id WHERE c.table_name = $name
                       ORDER BY t.id, c.column_no""",
                    {"name": name},
                ):
                    rows.setdefault(term_id, (term_id, frozenset(tokenize(path)), level, path, []))[4].append((column, code))
                self._tables[name] = list(rows.values())
            return self._tables[name]

    def _resolved(self, raw_codes: list[str]) -> dict[str, list[str]]:
        """Printed index codes -> their billable codes, in document order (all of them read once)."""
        with self._tables_lock:
            if self._billable_of is None:
                rows = self._rows("SELECT c.raw_code, c.code FROM index_codes c JOIN nodes n ON n.code = c.code ORDER BY n.seq")
                billable_of: dict[str, list[str]] = {}
                for raw, code in rows:
                    billable_of.setdefault(raw, []).append(code)
                self._billable_of = billable_of
        return {raw: self._billable_of[raw] for raw in set(raw_codes) if raw in self._billable_of}


def _key(code: str) -> str:
    cleaned = code.strip().upper() if isinstance(code, str) else ""
    return cleaned if _CHAPTER_OR_BLOCK.fullmatch(cleaned) else normalize(cleaned)


def _info(row: tuple) -> CodeInfo:
    return CodeInfo(*row)


def _needs_seventh(code: str, completions: list[str]) -> bool:
    """True when every billable code under `code` is it plus a 7th character (X-padded)."""
    stem = undotted(code).ljust(6, "X")
    return bool(completions) and len(stem) == 6 and all(
        len(undotted(c)) == 7 and undotted(c).startswith(stem) for c in completions
    )


class _Hierarchy:
    """All nodes and notes in document order, in memory, for fast expansion (loaded once, < 1 s)."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection):
        import numpy as np

        from icd_graph.search import subtree_ends

        columns = cursor.execute(f"SELECT {_COLUMNS} FROM nodes n ORDER BY n.seq").fetchnumpy()
        self.columns = [columns[name].tolist() for name in _COLUMN_NAMES]
        codes = self.columns[0]
        self.position = {code: i for i, code in enumerate(codes)}
        self.parent = [self.position.get(p, -1) if p is not None else -1 for p in self.columns[4]]
        self.depth = np.asarray(columns["depth"], dtype=np.int16)
        self.billable = np.asarray(columns["billable"], dtype=bool)
        self.end = subtree_ends(self.depth)
        self.notes: dict[int, list[tuple[str, str]]] = {}
        for code, kind, text in cursor.execute("SELECT code, kind, text FROM notes ORDER BY seq").fetchall():
            self.notes.setdefault(self.position[code], []).append((kind, text))
        cursor.close()
        self.children: dict[int, list[int]] = {}
        for i, p in enumerate(self.parent):
            self.children.setdefault(p, []).append(i)

    def info(self, i: int) -> CodeInfo:
        return CodeInfo(*(column[i] for column in self.columns))

    def expand(self, i: int, kind: str) -> list[int]:
        parent = self.parent[i]
        if kind == "parent":
            return [parent] if parent >= 0 else []
        if kind == "children":
            return list(self.children.get(i, ()))
        if kind == "ancestors":
            chain = []
            while parent >= 0:
                chain.append(parent)
                parent = self.parent[parent]
            return chain
        if kind == "descendants":
            return list(range(i + 1, int(self.end[i])))
        if kind == "siblings":
            return [j for j in self.children.get(parent, ()) if j != i]
        if kind == "cousins":
            grandparent = self.parent[parent] if parent >= 0 else -1
            if grandparent < 0:
                return []
            uncles = [u for u in self.children.get(grandparent, ()) if u != parent]
            return sorted(j for u in uncles for j in self.children.get(u, ()))
        import numpy as np

        under = np.arange(i, int(self.end[i]))
        under = under[self.billable[under]]
        return under[np.lexsort((under, self.depth[under]))].tolist()


_GENERIC_COLUMN_WORDS = frozenset(tokenize("behavior primary"))


class _Term:
    __slots__ = ("id", "source", "parent_id", "level", "title", "path", "code", "see", "see_also", "tokens", "modifiers", "children")

    def __init__(self, row: tuple, tokens: frozenset[str], modifiers: frozenset[str]):
        self.id, self.source, self.parent_id, self.level, self.title, self.path = row[:6]
        self.code, self.see, self.see_also = row[6:9]
        self.tokens = tokens
        self.modifiers = modifiers - tokens
        self.children: list[int] = []


class _IndexTree:
    """The alphabetic and external-cause index terms and the Table of Neoplasms rows, in memory,
    for navigation."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection):
        self.tokenize = tokenize
        rows = cursor.execute(
            """SELECT id, source, parent_id, level, title, path, code, see, see_also, nemod
               FROM index_terms WHERE source IN ('index', 'eindex', 'neoplasm') ORDER BY id"""
        ).fetchall()
        self.cells: dict[int, list[tuple[str, str]]] = {}
        for term_id, column, code in cursor.execute(
            "SELECT term_id, column_name, code FROM table_cells WHERE table_name = 'neoplasm' ORDER BY term_id, column_no"
        ).fetchall():
            self.cells.setdefault(term_id, []).append((column, code))
        self.behaviours = frozenset().union(*(self._behaviour(column) for cells in self.cells.values() for column, _ in cells))
        cursor.close()
        self.rows: dict[int, _Term] = {}
        self.mains: dict[str, list[int]] = {}
        for row in rows:
            term = _Term(row, frozenset(tokenize(row[4] or "")), frozenset(tokenize(row[9] or "")))
            self.rows[term.id] = term
            if term.parent_id is not None and term.parent_id in self.rows:
                self.rows[term.parent_id].children.append(term.id)
            elif term.level == 0:
                parts = (term.title or "").split(",")
                for key in {self._key(term.title or ""), *(self._key(part) for part in parts)}:
                    if key:
                        self.mains.setdefault(key, []).append(term.id)

    def _key(self, text: str) -> str:
        return " ".join(self.tokenize(text))

    def columns(self, term_id: int, wanted: frozenset[str]) -> list[tuple[str, str]]:
        """(column, code) cells of a Table of Neoplasms row: when `wanted` names a behaviour
        ('benign', 'in situ', 'secondary'), the cells of that behaviour; else all."""
        cells = self.cells.get(term_id, [])
        if not wanted & self.behaviours:
            return cells
        return [(column, code) for column, code in cells if self._behaviour(column) & wanted]

    def _behaviour(self, column: str) -> frozenset[str]:
        return frozenset(self.tokenize(column)) - _GENERIC_COLUMN_WORDS

    def subtree(self, term_id: int):
        """The term, then its descendants in index order."""
        stack = [term_id]
        while stack:
            current = stack.pop()
            yield current
            stack.extend(reversed(self.rows[current].children))

    def navigate(self, terms: list[str], budget: int, index: str | None = None) -> list[int]:
        """Reached term ids: the best-covering term, then the targets of followed references;
        with `index`, from the main terms of that index only."""
        mains = self._main_candidates(terms, index)
        if not mains:
            return []
        wanted = frozenset(self.tokenize(" ".join(terms)))
        denied = frozenset(self.tokenize(" ".join(_WITHOUT.findall(" ".join(terms)))))
        best_key, best = None, None
        for rank, main in enumerate(mains):
            for term_id, covered, extras in self._walk(main, wanted, denied):
                term = self.rows[term_id]
                key = (len(covered), -extras, -rank, -term.level, -term.id)
                if best_key is None or key > best_key:
                    best_key, best = key, (term_id, covered)
        term_id, covered = best
        reached = [term_id]
        if budget <= 0:
            return reached
        term = self.rows[term_id]
        missing = [word for word in " ".join(terms).split() if self.tokenize(word) and not set(self.tokenize(word)) <= covered]
        references = []
        if term.see and not term.code:
            references.append(term.see)
        if missing:
            references.extend(self.rows[i].see_also for i in (term_id, mains[0]) if self.rows[i].see_also)
        for reference in references:
            if reference.strip().lower() in GENERIC_REFERENCES:
                continue
            for target in self.navigate([part.strip() for part in reference.split(",")] + missing, budget - 1):
                if target not in reached:
                    reached.append(target)
        return reached

    def _main_candidates(self, terms: list[str], index: str | None = None) -> list[int]:
        """Main terms (of `index` only, when given) matching the first term that matches any;
        else any word that does."""
        def of_index(ids: list[int]) -> list[int]:
            return [i for i in ids if index is None or self.rows[i].source == index]

        for term in terms:
            for key in (self._key(term), self._key(term.split(",")[0])):
                if of_index(self.mains.get(key, [])):
                    return of_index(self.mains[key])
        found: list[int] = []
        for word in " ".join(terms).split():
            for main in of_index(self.mains.get(self._key(word), [])):
                if main not in found:
                    found.append(main)
        return found

    def _walk(self, main: int, wanted: frozenset[str], denied: frozenset[str] = frozenset()):
        """(term id, query tokens covered by its path, path tokens not asked for) per term. The
        nonessential modifiers on the path ('Hypertension (essential)') cover query words too,
        and are never counted as not asked for. A subterm that names what the query denies ('with
        macular edema' for '... without macular edema') covers none of it: those words count as
        not asked for."""
        main_term = self.rows[main]
        stack = [(main, (main_term.tokens | main_term.modifiers) & wanted, 0)]
        while stack:
            term_id, covered, extras = stack.pop()
            yield term_id, covered, extras
            for child in self.rows[term_id].children:
                term = self.rows[child]
                against = frozenset() if "without" in term.tokens else term.tokens & denied
                covered_here = ((term.tokens | term.modifiers) & wanted) - against
                stack.append((child, covered | covered_here, extras + len(term.tokens - wanted) + len(against)))
