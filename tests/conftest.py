"""Test configuration: real data from ../shared (overridable by environment) and one
knowledge base built per test session."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"

os.environ.setdefault("ICD10CM_SOURCE", str(SHARED / "icd10cm"))
os.environ.setdefault("ACI_BENCH_DIR", str(SHARED / "aci-bench" / "challenge_data"))
os.environ.setdefault("MDACE_DIR", str(SHARED / "mdace"))
os.environ.setdefault("LABELS_DIR", str(SHARED / "labels"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# The fault tests interrupt commands with SIGINT. A test run started in the background of a shell
# without job control (`pytest &` in a script) ignores SIGINT, and so would every command it
# starts, which then runs on past its Ctrl-C: a handler here gives them the default again.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def icd_source() -> Path:
    path = Path(os.environ["ICD10CM_SOURCE"])
    if not path.exists():
        pytest.fail(f"ICD10CM_SOURCE={path} does not exist; point it at the icd10cm data folder")
    return path


@pytest.fixture(scope="session")
def kb_path(icd_source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A knowledge base built once per session from the real source files, or the one that
    ICD_TEST_KB names (built by this checkout: tools/mutants.py builds one for all its runs)."""
    if os.environ.get("ICD_TEST_KB"):
        return Path(os.environ["ICD_TEST_KB"])
    from icd_graph.build import build

    db = tmp_path_factory.mktemp("kb") / "icd10cm.duckdb"
    build(source=icd_source, db=db)
    return db


@pytest.fixture(scope="session")
def kb(kb_path: Path):
    from icd_graph.kb import KnowledgeBase

    with KnowledgeBase(kb_path) as base:
        yield base


@pytest.fixture(scope="session")
def labels_dir() -> Path:
    return Path(os.environ["LABELS_DIR"])
