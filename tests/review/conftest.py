"""Fixtures of the review tests: a small notes dataset (the example notes, gold codes for one
of them, a note written as HTML with a script in it) and the predictions a real
program run makes for it: `predict --program medcoder` through DSPy -> LiteLLM -> HTTP to
the scripted OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest
from click.testing import CliRunner

from cli import cli
from tests.programs.scripted_server import ScriptedServer, section

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
SCRIPT_NOTE = (
    "ASSESSMENT: <script>document.title = 'pwned'; window.pwned = true;</script>\n"
    "Essential hypertension, above goal. <img src=x onerror=\"window.pwned = true\"> & <b>not bold</b>\n"
)
# (diagnosis, evidence) pairs the scripted model "extracts" from any note that contains the quote.
DIAGNOSES = [
    ("Essential hypertension", "Essential hypertension, above goal."),
    ("Type 2 diabetes mellitus with hyperglycemia", "uncontrolled with hyperglycemia"),
    ("Hyperlipidemia", "Hyperlipidemia. Continue atorvastatin"),
    ("Obesity", "Obesity, BMI 31."),
    ("Moderate persistent asthma", "moderate persistent asthma"),
]


def extract(user: str) -> dict:
    note = section(user, "note")
    found = [(d, q) for d, q in DIAGNOSES if q in note]
    return {"diagnoses": [d for d, _ in found], "evidence": [q for _, q in found]}


@pytest.fixture(scope="session")
def notes_file(tmp_path_factory) -> Path:
    notes = {path.stem: path.read_text(encoding="utf-8") for path in sorted(EXAMPLES.glob("*.txt"))}
    # the neuropathy documented in the exam only, where the coding rules read no problems: the
    # program misses it, and the coder adds it
    notes["diabetes_followup"] = (
        notes["diabetes_followup"]
        .replace("2. Diabetic peripheral polyneuropathy. Foot care education, podiatry referral.\n", "")
        .replace("in both feet.\n", "in both feet: Diabetic peripheral polyneuropathy.\n")
    )
    notes["html-note"] = SCRIPT_NOTE
    path = tmp_path_factory.mktemp("review-data") / "notes.jsonl"
    gold = {"diabetes_followup": ["E11.3293", "E11.42", "I10", "E78.5", "E66.9"]}
    path.write_text("".join(json.dumps({"id": i, "text": t, "codes": gold.get(i, [])}) + "\n" for i, t in notes.items()))
    return path


@pytest.fixture(scope="session")
def predictions_file(kb_path, notes_file, tmp_path_factory) -> Path:
    """What `predict --input notes.jsonl --program medcoder` writes against the scripted server."""
    out = tmp_path_factory.mktemp("review-preds") / "preds.jsonl"
    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    try:
        with ScriptedServer({"diagnoses": extract}) as server:
            result = CliRunner().invoke(cli, [
                "predict", "--input", f"jsonl:{notes_file}", "--output", str(out), "--program", "medcoder",
                "--model", "scripted", "--api-base", server.url, "--retries", "0", "--db", str(kb_path), "--json",
            ])
    finally:
        dspy.cache = saved
    assert result.exit_code == 0, result.output
    return out
