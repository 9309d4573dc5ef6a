"""Build one knowledge-base DuckDB file from the ICD-10-CM sources. The only writer of the schema.

The file is written atomically: everything goes into a temporary file (and a temporary search
index folder) beside the target, which replace the previous ones only once complete. A failed
build leaves the previous knowledge base untouched and no temporary files behind.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timezone
from importlib import metadata
from operator import attrgetter
from pathlib import Path

import duckdb
import numpy as np

from icd_graph import alphabetic, resolve, search, tables
from icd_graph.dense import DenseReport, build_vectors, dense_dir_for
from icd_graph.embed import DEFAULT_MODEL, load_embedder
from icd_graph.schema import DDL, SCHEMA_VERSION
from icd_graph.sources import Sources, open_sources
from icd_graph.tabular import Tabular, read_tabular

Progress = Callable[[str, int, int], None]
"""Called with (step description, steps done, total steps) as the build advances."""

STEPS = (
    "Reading sources",
    "Parsing the tabular list",
    "Writing codes, notes and hierarchy",
    "Parsing the index and tables",
    "Resolving index codes",
    "Building search indexes",
    "Embedding documents",
    "Finishing",
)

INDEX_ORDER = (("index", "index"), ("index_csv", "index"), ("eindex", "eindex"))
TABLE_ORDER = ("neoplasm", "drug")

_RELEASE_DATE = re.compile(
    r"(January|February|March|April|May|June|July|August|September|October|November|December)"
    r"[-_ ](\d{1,2})[-_ ](\d{4})",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SourceSummary:
    kind: str
    name: str
    sha256: str
    version: str | None


@dataclass(frozen=True)
class BuildReport:
    db: Path
    search_dir: Path
    release: str
    fiscal_year: int
    sources: tuple[SourceSummary, ...]
    ignored: tuple[str, ...]
    counts: dict[str, int]
    seconds: float
    swept: tuple[str, ...] = ()
    dense: DenseReport | None = None


def search_dir_for(db: Path) -> Path:
    """The folder of the bm25s search indexes that belongs to a knowledge-base file."""
    return db.with_name(db.name + ".bm25")


def build(
    source: Path | None, db: Path, progress: Progress | None = None, dense: bool = False, dense_model: str = DEFAULT_MODEL
) -> BuildReport:
    """Build the knowledge base of `source` (folder, zip or file; None: the tabular XML shipped
    with simple-icd-10-cm) into `db`, replacing any previous file there; with `dense`, the dense
    vectors too (`icd_graph.dense`, reusing the previous ones when nothing they depend on changed).
    A build without `dense` removes the previous vectors, which belong to the replaced file."""
    started = time.perf_counter()
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    swept = sweep_stale(db)
    temp_db = db.with_name(f".{db.name}.{temp_tag()}.tmp")
    temp_search = search_dir_for(temp_db)
    temp_dense = dense_dir_for(temp_db)
    embedder = load_embedder(dense_model) if dense else None
    step = _stepper(progress)
    dense_report = None
    con = None
    try:
        step()
        with open_sources(source) as sources:
            step()
            tabular = read_tabular(sources.tabular.path)
            con = duckdb.connect(str(temp_db))
            con.execute(DDL)
            step()
            _write_release(con, sources, tabular)
            _write_tabular(con, tabular)
            step()
            has_index = _write_index(con, sources)
        step()
        if has_index:
            resolve.resolve_codes(con)
            resolve.index_edges(con)
        step()
        temp_search.mkdir()
        search.build_indexes(con, temp_search)
        step()
        if embedder is not None:
            dense_report = build_vectors(
                con, temp_dense, embedder, dense_model, previous=dense_dir_for(db), progress=_embedding_progress(progress)
            )
        step()
        counts = _write_counts(con)
        _create_lookup_indexes(con)
        name, fiscal_year = con.execute("SELECT name, fiscal_year FROM release").fetchone()
        con.execute("CHECKPOINT")
        con.close()
        con = None
        _install(temp_db, temp_search, temp_dense if embedder is not None else None, db)
    finally:
        if con is not None:
            con.close()
        _remove(temp_db, temp_search, temp_dense)
    step()
    return BuildReport(
        db=db,
        search_dir=search_dir_for(db),
        release=name,
        fiscal_year=fiscal_year,
        sources=tuple(
            SourceSummary(f.kind, f.name, f.sha256, f.version) for f in sources.files.values()
        ),
        ignored=tuple(sources.ignored),
        counts=counts,
        seconds=round(time.perf_counter() - started, 2),
        swept=tuple(path.name for path in swept),
        dense=dense_report,
    )


def temp_tag() -> str:
    """The part of a temporary name that says which process made it: PID-random."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def sweep_stale(db: Path) -> list[Path]:
    """Removes what builds of `db` killed outright (SIGKILL, power loss) left beside it: temporary
    database files, their WAL and search folders, and replaced search folders not yet deleted.
    A build still running (its process alive) keeps its own."""
    stale = []
    for path in db.parent.glob(f".{glob_escape(db.name)}.*"):
        match = TEMPORARY.match(path.name)
        if match and match["name"] in (db.name, f"{db.name}.bm25", f"{db.name}.dense") and not _alive(int(match["pid"])):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            stale.append(path)
    return stale


TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{12}\.(?:tmp(?:\.wal|\.bm25|\.dense)?|old)$")


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_name(file_name: str, fiscal_year: int) -> str:
    """'icd10cm-tabular-April-1-2026.xml' -> 'ICD-10-CM April 1 2026'; else 'ICD-10-CM FY2026'."""
    match = _RELEASE_DATE.search(file_name)
    if match:
        month, day, year = match.groups()
        return f"ICD-10-CM {month.capitalize()} {int(day)} {year}"
    return f"ICD-10-CM FY{fiscal_year}"


def insert_rows(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence) -> None:
    """Bulk-insert dataclass or NamedTuple rows whose field names are columns of `table`.

    The rows go through one registered view of NumPy object columns, which DuckDB scans in
    bulk (an order of magnitude faster than `executemany`).
    """
    if not rows:
        return
    first = rows[0]
    names = [f.name for f in fields(first)] if is_dataclass(first) else list(first._fields)
    columns = zip(*map(attrgetter(*names), rows)) if is_dataclass(first) else zip(*rows)
    view = f"_rows_{table}"
    con.register(view, {name: np.array(values, dtype=object) for name, values in zip(names, columns)})
    try:
        column_list = ", ".join(names)
        con.execute(f"INSERT INTO {table} ({column_list}) SELECT {column_list} FROM {view}")
    finally:
        con.unregister(view)


def _embedding_progress(progress: Progress | None):
    if progress is None:
        return None
    step = STEPS.index("Embedding documents")
    return lambda done, total: progress(f"Embedding documents ({done:,} of {total:,})", step, len(STEPS))


def _stepper(progress: Progress | None) -> Callable[[], None]:
    done = 0

    def step() -> None:
        nonlocal done
        if progress is not None:
            progress(STEPS[min(done, len(STEPS) - 1)], done, len(STEPS))
        done += 1

    return step


def _tool_version() -> str:
    try:
        return metadata.version("icd-coder")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_release(con: duckdb.DuckDBPyConnection, sources: Sources, tabular: Tabular) -> None:
    fiscal_year = int(tabular.version)
    con.execute(
        "INSERT INTO release VALUES (?, ?, ?, ?, ?)",
        [
            release_name(Path(sources.tabular.name).name, fiscal_year),
            fiscal_year,
            SCHEMA_VERSION,
            datetime.now(timezone.utc).replace(tzinfo=None),
            _tool_version(),
        ],
    )
    con.executemany(
        "INSERT INTO source_files VALUES (?, ?, ?, ?)",
        [[f.kind, f.name, f.sha256, f.version] for f in sources.files.values()],
    )


def _write_tabular(con: duckdb.DuckDBPyConnection, tabular: Tabular) -> None:
    """Nodes and notes, then the ancestor closure and the hierarchy edges (a = parent, b = child)."""
    insert_rows(con, "nodes", tabular.nodes)
    insert_rows(con, "notes", tabular.notes)
    con.execute(
        """
        INSERT INTO ancestors
        WITH RECURSIVE up(code, ancestor, distance) AS (
            SELECT code, parent, 1 FROM nodes WHERE parent IS NOT NULL
            UNION ALL
            SELECT up.code, n.parent, up.distance + 1
            FROM up JOIN nodes n ON n.code = up.ancestor
            WHERE n.parent IS NOT NULL
        )
        SELECT code, ancestor, distance FROM up ORDER BY code, distance
        """
    )
    con.execute(
        "INSERT INTO graph_edges SELECT parent, code, 'hierarchy' FROM nodes WHERE parent IS NOT NULL"
    )


def _write_index(con: duckdb.DuckDBPyConnection, sources: Sources) -> bool:
    """Index terms and table cells of whichever index files the source holds; False if none."""
    next_id = 1
    written = False
    for kind, source_name in INDEX_ORDER:
        file = sources.get(kind)
        if file is None:
            continue
        if kind == "index_csv":
            rows = alphabetic.read_index_csv(file.path, start_id=next_id)
        else:
            rows = alphabetic.read_index_xml(file.path, source_name, start_id=next_id)
        insert_rows(con, "index_terms", rows)
        next_id += len(rows)
        written = True
    for table_name in TABLE_ORDER:
        file = sources.get(table_name)
        if file is None:
            continue
        terms, cells = tables.read_table_xml(file.path, table_name, start_id=next_id)
        insert_rows(con, "index_terms", terms)
        insert_rows(con, "table_cells", cells)
        next_id += len(terms)
        written = True
    return written


def _write_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Add the tabular, index and graph counts to `build_report` and return all its rows."""
    con.execute(
        """
        INSERT INTO build_report
        SELECT 'nodes ' || kind, count(*) FROM nodes GROUP BY kind
        UNION ALL SELECT 'billable codes', count(*) FROM nodes WHERE billable
        UNION ALL SELECT 'notes', count(*) FROM notes
        UNION ALL SELECT 'ancestor pairs', count(*) FROM ancestors
        UNION ALL SELECT 'index terms ' || source, count(*) FROM index_terms GROUP BY source
        UNION ALL SELECT 'table cells ' || table_name, count(*) FROM table_cells GROUP BY table_name
        UNION ALL SELECT 'graph edges ' || kind, count(*) FROM graph_edges GROUP BY kind
        """
    )
    rows = con.execute("SELECT item, count FROM build_report ORDER BY rowid").fetchall()
    return {item: count for item, count in rows}


def _create_lookup_indexes(con: duckdb.DuckDBPyConnection) -> None:
    for statement in (
        "CREATE INDEX ancestors_code ON ancestors (code)",
        "CREATE INDEX ancestors_ancestor ON ancestors (ancestor)",
        "CREATE INDEX notes_code ON notes (code)",
        "CREATE INDEX index_codes_raw ON index_codes (raw_code)",
    ):
        con.execute(statement)


def _install(temp_db: Path, temp_search: Path, temp_dense: Path | None, db: Path) -> None:
    """Move the finished file, search folder and dense folder (None: remove the old one) into
    place, the database file last."""
    moves = [(temp_search, search_dir_for(db)), (temp_dense, dense_dir_for(db))]
    old = []
    for temp, final in moves:
        if final.exists():
            stale = final.with_name(f".{final.name}.{temp_tag()}.old")
            final.rename(stale)
            old.append(stale)
        if temp is not None:
            temp.rename(final)
    stale_wal = db.with_name(db.name + ".wal")
    if stale_wal.exists():
        stale_wal.unlink()
    os.replace(temp_db, db)
    for stale in old:
        shutil.rmtree(stale, ignore_errors=True)


def _remove(temp_db: Path, temp_search: Path, temp_dense: Path) -> None:
    for path in (temp_db, temp_db.with_name(temp_db.name + ".wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(temp_search, ignore_errors=True)
    shutil.rmtree(temp_dense, ignore_errors=True)
