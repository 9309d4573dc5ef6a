"""Fixtures of the fault suite: short synthetic notes, a scripted reply that codes them, and
DSPy's cache isolated per test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dspy
import pytest

from tests.programs.scripted_server import section

REPO = Path(__file__).resolve().parents[2]
CONDITIONS = (
    "Essential hypertension", "Type 2 diabetes mellitus", "Asthma", "Hyperlipidemia", "Gout",
    "Migraine", "Hypothyroidism", "Atrial fibrillation", "Iron deficiency anemia", "Allergic rhinitis",
)
SECRET = "Zebulon Quartermaine"
"""A patient name written into every synthetic note: no log or error line may ever show it."""


def note_text(number: int) -> str:
    condition = CONDITIONS[number % len(CONDITIONS)]
    return f"{SECRET}, visit {number}. Assessment {number}: {condition}. Plan: review in {number % 12 + 1} weeks."


def write_notes(path: Path, count: int) -> list[str]:
    """`count` synthetic notes as JSONL at `path`; their ids."""
    ids = [f"n{number:03d}" for number in range(count)]
    path.write_text("".join(json.dumps({"id": i, "text": note_text(n)}) + "\n" for n, i in enumerate(ids)))
    return ids


def assessed(user: str) -> dict[str, list[str]]:
    """The extract stage's answer: the condition the note's assessment names, and that line."""
    found = re.search(r"(Assessment \d+: ([^.]+))\.", section(user, "note"))
    return {"diagnoses": [found.group(2)], "evidence": [found.group(1)]} if found else {"diagnoses": [], "evidence": []}


SCRIPT = {"diagnoses": assessed}


@pytest.fixture
def isolated_cache(tmp_path):
    """DSPy's caches switched off (or on disk in the test's folder, via `use_disk`), restored after."""
    saved = dspy.cache

    def use_disk(folder: Path | None = None) -> Path:
        folder = folder or tmp_path / "dspy-cache"
        dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=False, disk_cache_dir=str(folder))
        return folder

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    yield use_disk
    dspy.cache = saved


@pytest.fixture(scope="module")
def medcoder(kb):
    from programs.registry import build_program

    return build_program("medcoder", kb)
