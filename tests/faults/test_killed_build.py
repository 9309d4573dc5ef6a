"""A knowledge-base build killed with SIGKILL cannot remove its temporary files; the next build
sweeps them (and leaves a running build's own alone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from icd_graph.build import build, sweep_stale
from icd_graph.errors import IcdError
from tests.faults.conftest import REPO


def temporaries(folder, db_name: str) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith(f".{db_name}."))


def test_a_killed_build_leaves_temporaries_the_next_build_sweeps(icd_source, tmp_path):
    db = tmp_path / "kb.duckdb"
    running = subprocess.Popen([sys.executable, "cli.py", "icd", "build", "--source", str(icd_source), "--db", str(db)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not temporaries(tmp_path, db.name) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    running.send_signal(signal.SIGKILL)
    running.wait()
    left = temporaries(tmp_path, db.name)
    assert left and all(f".{running.pid}-" in name for name in left)
    ours = tmp_path / f".{db.name}.{os.getpid()}-0123456789ab.tmp"
    ours.write_bytes(b"a build in progress")
    other = tmp_path / ".unrelated.1-0123456789ab.tmp"
    other.write_bytes(b"not ours")

    with pytest.raises(IcdError):
        build(source=tmp_path / "no-source", db=db)
    assert temporaries(tmp_path, db.name) == [ours.name], "the killed build's files are swept, a live one's kept"
    assert other.exists() and not db.exists()
    assert sweep_stale(db) == []
