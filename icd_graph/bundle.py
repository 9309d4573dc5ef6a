"""A knowledge base as one value: the bytes of its DuckDB file and of the search indexes beside
it (`.bm25`, and `.dense` when built), for a process that cannot read the disk it was built on
(a worker on another node of a Ray cluster), and written back as a knowledge base there, once
per node and content."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

DB_NAME = "icd10cm.duckdb"
INDEXES = (".bm25", ".dense")
"""The folders beside a knowledge-base file that belong to it (lexical and dense search)."""


@dataclass(frozen=True)
class Bundle:
    """The files of a knowledge base by path relative to its folder, and their content digest."""

    files: dict[str, bytes]
    digest: str

    @property
    def size(self) -> int:
        return sum(len(data) for data in self.files.values())


def pack(db: Path) -> Bundle:
    """The knowledge base at `db` (the DuckDB file and the index folders beside it) as a Bundle."""
    db = Path(db)
    files = {DB_NAME: db.read_bytes()}
    for suffix in INDEXES:
        folder = db.with_name(db.name + suffix)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                files[f"{DB_NAME}{suffix}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(name.encode() + b"\0" + len(data).to_bytes(8, "big"))
        digest.update(data)
    return Bundle(files, digest.hexdigest()[:16])


def unpack(bundle: Bundle, root: Path | None = None) -> Path:
    """The DuckDB file of `bundle` written under `root` (default: the temp dir's
    `icd-coder-kb`) in a folder named by its digest: written once (to a private folder, then
    renamed into place, so processes unpacking at once never see half a knowledge base) and
    reused by every later process on the machine."""
    root = Path(root or Path(tempfile.gettempdir()) / "icd-coder-kb")
    folder = root / bundle.digest
    if not (folder / DB_NAME).is_file():
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{bundle.digest}-", dir=root))
        try:
            for name, data in bundle.files.items():
                target = staging / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            os.rename(staging, folder)
        except OSError:
            if not (folder / DB_NAME).is_file():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder / DB_NAME
