"""Dense vectors of what a coder searches, built beside the knowledge base, and exact search
over them.

Documents (`corpus`): every billable code's description without its encounter clause (the codes
that differ only by the 7th character share one document, initial encounter first) and each of
its inclusion terms; and every full alphabetic-index path that leads to a code (the terms that
print a code, the 'see' terms, the Table of Neoplasms cells: 'Neoplasm, neoplastic, pituitary,
Benign'), pointing to the billable codes it resolves to. The Table of Drugs is left to the
lexical search (40,000 cells that say a substance and an intent). Identical texts are one
document.

`build_vectors` writes a folder beside the database (`<db>.dense`): vectors.npy (float32, each
document's L2-normalised vector as a column, `LAYOUT`), docs.json and meta.json (model, model id with the digest of its
weights, release, build time of the database, digest of the documents). A rebuild reuses the
previous vectors when the model, the release and the documents are all unchanged. `DenseIndex`
refuses vectors that were made for another build of the database or by another model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

from icd_graph import search
from icd_graph.embed import DEFAULT_MODEL, Embedder, available, load_embedder
from icd_graph.errors import IcdError
from icd_graph.search import encounter_rank, without_encounter

TABULAR_KIND = "tabular"
INDEX_KIND = "index"
DENSE_TABLES = ("neoplasm",)
REBUILD = "rebuild them with `python cli.py icd build --dense`"
LAYOUT = "dimension-major"
"""vectors.npy holds one row per dimension: mapped, not copied, at load, and a query times it
reads memory in order (2x faster than one row per document)."""

Progress = Callable[[int, int], None]

_BILLABLE = """
SELECT n.code, n.description, coalesce(i.terms, []) FROM nodes n
LEFT JOIN (
    SELECT code, list(text ORDER BY seq) AS terms FROM notes WHERE kind = 'inclusion_term' GROUP BY code
) i USING (code)
WHERE n.billable ORDER BY n.seq
"""


class DenseMismatch(IcdError):
    """Vectors made for another build of the knowledge base or by another model."""


@dataclass(frozen=True)
class Document:
    kind: str
    text: str
    codes: tuple[str, ...]


@dataclass(frozen=True)
class DenseReport:
    model_id: str
    documents: int
    reused: bool
    seconds: float


def dense_dir_for(db: Path) -> Path:
    """The folder of the dense vectors that belongs to a knowledge-base file."""
    return db.with_name(db.name + ".dense")


def corpus(con: duckdb.DuckDBPyConnection) -> list[Document]:
    """The documents of the knowledge base in `con` (see the module docstring)."""
    found: dict[str, tuple[str, list[str]]] = {}

    def add(kind: str, text: str, codes) -> None:
        text = " ".join(text.split())
        if not text:
            return
        _, listed = found.setdefault(text, (kind, []))
        listed.extend(code for code in codes if code not in listed)

    rows = con.execute(_BILLABLE).fetchall()
    groups: dict[str, list[tuple[int, int, str]]] = {}
    for seq, (code, description, _) in enumerate(rows):
        groups.setdefault(without_encounter(description), []).append((encounter_rank(description), seq, code))
    for text, members in groups.items():
        add(TABULAR_KIND, text, [code for *_, code in sorted(members)])
    for code, _, terms in rows:
        for term in terms:
            add(TABULAR_KIND, term, [code])

    codes = [code for code, *_ in rows]
    position = {code: i for i, code in enumerate(codes)}
    terms = search.index_terms(con)
    resolved = search.resolutions(con, position)
    for _, path, _, raw, _ in search.index_documents(con, terms, search.index_phrases(terms), resolved, DENSE_TABLES):
        add(INDEX_KIND, path, [codes[p] for p in sorted(set(resolved[raw]))])
    return [Document(kind, text, tuple(listed)) for text, (kind, listed) in found.items()]


def corpus_digest(documents: list[Document]) -> str:
    payload = json.dumps([[d.kind, d.text, list(d.codes)] for d in documents], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def build_vectors(
    con: duckdb.DuckDBPyConnection,
    out_dir: Path,
    embedder: Embedder,
    model: str = DEFAULT_MODEL,
    previous: Path | None = None,
    progress: Progress | None = None,
    documents: list[Document] | None = None,
) -> DenseReport:
    """Write the vectors of `documents` (default: the whole `corpus`) to `out_dir`, reusing those
    in `previous` when its model, release and documents are the same."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    release, built_at = con.execute("SELECT name, built_at FROM release").fetchone()
    documents = corpus(con) if documents is None else documents
    meta = {
        "model": model,
        "model_id": embedder.model_id,
        "release": release,
        "built_at": str(built_at),
        "corpus": corpus_digest(documents),
        "documents": len(documents),
        "dim": embedder.dim,
        "layout": LAYOUT,
    }
    reused = _reusable(previous, meta)
    if reused:
        _link_or_copy(previous / "vectors.npy", out_dir / "vectors.npy")
    else:
        vectors = embedder.embed_documents([d.text for d in documents], progress)
        np.save(out_dir / "vectors.npy", np.ascontiguousarray(vectors.T))
    (out_dir / "docs.json").write_text(
        json.dumps([[d.kind, d.text, list(d.codes)] for d in documents], ensure_ascii=False), encoding="utf-8"
    )
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return DenseReport(embedder.model_id, len(documents), reused, round(time.perf_counter() - started, 2))


def _reusable(previous: Path | None, meta: dict) -> bool:
    if previous is None or not (previous / "vectors.npy").is_file():
        return False
    try:
        old = json.loads((previous / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return old.get("layout") == LAYOUT and all(old.get(key) == meta[key] for key in ("model_id", "release", "corpus", "documents", "dim"))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class DenseIndex:
    """The vectors of one knowledge base and the model that made them, loaded once."""

    def __init__(self, folder: Path, release: str, built_at: str):
        self.folder = Path(folder)
        try:
            self.meta = json.loads((self.folder / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise DenseMismatch(f"unreadable dense vectors at {self.folder}; {REBUILD}") from None
        if (self.meta.get("release"), self.meta.get("built_at")) != (release, built_at):
            raise DenseMismatch(
                f"the dense vectors at {self.folder} were made for {self.meta.get('release')} built "
                f"{self.meta.get('built_at')}, not for this knowledge base ({release} built {built_at}); {REBUILD}"
            )
        self.embedder = load_embedder(self.meta["model"])
        if self.embedder.model_id != self.meta["model_id"]:
            raise DenseMismatch(
                f"the dense vectors at {self.folder} were made by {self.meta['model_id']}, the installed "
                f"model is {self.embedder.model_id}; {REBUILD}"
            )
        if self.meta.get("layout") != LAYOUT:
            raise DenseMismatch(f"the dense vectors at {self.folder} were written by an older version; {REBUILD}")
        self.matrix = np.load(self.folder / "vectors.npy", mmap_mode="r")
        docs = json.loads((self.folder / "docs.json").read_text(encoding="utf-8"))
        if self.matrix.shape != (self.embedder.dim, len(docs)):
            raise DenseMismatch(f"the dense vectors at {self.folder} do not match their documents; {REBUILD}")
        self.kinds = np.array([kind == TABULAR_KIND for kind, *_ in docs])
        self.texts = [text for _, text, _ in docs]
        self.codes = [codes for *_, codes in docs]

    def similarities(self, text: str) -> np.ndarray:
        """Cosine similarity of the query with every document."""
        return self._query(text) @ self.matrix

    @functools.lru_cache(maxsize=4096)  # noqa: B019 - one index per knowledge base, kept for its life
    def _query(self, text: str) -> np.ndarray:
        return self.embedder.embed_queries([text])[0]


def open_dense(folder: Path, release: str, built_at: str) -> DenseIndex | None:
    """The dense index beside a knowledge base, or None when there is none or the dense extra
    is not installed; DenseMismatch when the vectors belong to another build or model."""
    if not (folder / "meta.json").is_file():
        return None
    try:
        model = json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("model", DEFAULT_MODEL)
    except (OSError, ValueError, AttributeError):
        raise DenseMismatch(f"unreadable dense vectors at {folder}; {REBUILD}") from None
    if not available(model):
        return None
    return DenseIndex(folder, release, built_at)
