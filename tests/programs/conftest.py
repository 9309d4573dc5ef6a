"""Fixtures of the program tests: a scripted OpenAI-compatible server on 127.0.0.1 and DSPy
without its caches, so every call goes through the real DSPy -> HTTP path."""

from __future__ import annotations

from pathlib import Path

import dspy
import pytest

from programs.lm import make_lm
from tests.programs.scripted_server import ScriptedServer

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"


@pytest.fixture(autouse=True, scope="module")
def no_dspy_cache():
    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    yield
    dspy.cache = saved


@pytest.fixture(scope="module")
def server():
    with ScriptedServer() as running:
        yield running


@pytest.fixture
def lm(server):
    return make_lm("hosted_vllm/scripted", server.url, cache=False, num_retries=0)


@pytest.fixture(scope="session")
def diabetes_note() -> str:
    return (EXAMPLES / "diabetes_followup.txt").read_text(encoding="utf-8")
