"""Output files are checked before any work starts, so that a run never finds out at its end
that it cannot save; missing parent folders are created by the writers when they write."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from icd_graph.errors import IcdError


class OutputError(IcdError):
    """An output path that cannot be written."""


def check_output(path: Path, flag: str) -> Path:
    """`path` when a file can be written there (its missing folders created then); OutputError
    naming `flag` when the path is a folder, a parent is a file, or the folder is not writable."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder: give a file path")
    folder = next(parent for parent in path.parents if parent.exists())
    if not folder.is_dir():
        raise OutputError(f"{flag} {path}: {folder} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise OutputError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{flag} {path} is read-only")
    return path


def same_file(first: Path, second: Path) -> bool:
    """Whether two paths name the same file (an output that would overwrite an input)."""
    first, second = Path(first).expanduser(), Path(second).expanduser()
    if first.exists() and second.exists():
        return first.samefile(second)
    return first.resolve() == second.resolve()
