"""Where a knowledge-base file lives when the user does not say."""

from __future__ import annotations

import os
from pathlib import Path


def default_db_path() -> Path:
    """`$ICD_DB`, else `icd10cm.duckdb` in the user cache dir (`$XDG_CACHE_HOME/icd-coder`)."""
    if os.environ.get("ICD_DB"):
        return Path(os.environ["ICD_DB"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "icd-coder" / "icd10cm.duckdb"
