"""End to end in real headless Chromium: a coder accepts, rejects, replaces (search box) and adds
(selected words) codes, reloads, and the page and the saved file agree; a note written as HTML
runs nothing. The app and the browser run inside a private network namespace this test creates
(`unshare --net`, loopback only), as a hospital deployment would keep its traffic.

Needs root (for the namespace) and Debian's chromium and chromium-driver (`make test` installs
them when it runs as root); skipped, saying so, elsewhere."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.review import browser_session

REPO = Path(__file__).resolve().parents[2]


def missing() -> str:
    if os.geteuid() != 0:
        return "needs root for a private network namespace (unshare --net)"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux, iproute2)"
    if not Path(browser_session.CHROMIUM).exists() or not Path(browser_session.DRIVER).exists():
        return "needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
    return ""


pytestmark = pytest.mark.skipif(bool(missing()), reason=missing() or "ready")


def test_a_coders_session_in_chromium(notes_file, predictions_file, kb_path, tmp_path):
    ids = [json.loads(line)["id"] for line in notes_file.read_text().splitlines()]
    out, report, shot = tmp_path / "reviewed.jsonl", tmp_path / "report.json", tmp_path / "review.png"
    done = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-m", "tests.review.browser_session",
         "--dataset", f"jsonl:{notes_file}", "--predictions", str(predictions_file), "--out", str(out),
         "--db", str(kb_path), "--report", str(report), "--shot", str(shot),
         "--diabetes", str(ids.index("diabetes_followup")), "--html-note", str(ids.index("html-note"))],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(report.read_text())
    if os.environ.get("REVIEW_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["REVIEW_SCREENSHOT"])

    # only loopback in the namespace: no route anywhere else
    assert seen["interfaces"] == ["lo"] and seen["routes"] == ""
    assert seen["resources"] and all(url.startswith(seen["origin"] + "/") for url in seen["resources"])

    # hovering, the keyboard, the reason box, the picker prefilled with the selected words
    assert seen["hover_card_lights"] == ["Essential hypertension, above goal."]
    assert seen["hover_span_lights"] == ["s0"] and seen["span_title"] == "E11.65 Type 2 diabetes mellitus with hyperglycemia"
    assert seen["focus_after_accept"] == "s1" and seen["reason_focused_in"] == "s1"
    assert seen["add_query"] == "Diabetic peripheral polyneuropathy"

    # after a reload the page shows every decision, including the other tab's
    assert seen["after_reload"] == {"s0": ["accepted", "E11.65"], "s1": ["rejected", "E66.9"], "s2": ["replaced", "E78.5"],
                                    "s3": ["accepted", "I10"], "a0": ["added", "E11.42"]}
    assert seen["reason_shown"] == "Reason: BMI 31 only, not assessed"
    assert seen["replacement_shown"].startswith("→ E78.00 Pure hypercholesterolemia")
    assert seen["added_span"] == "Diabetic peripheral polyneuropathy"
    assert "accepted" in seen["stale_tab_state"] or "changed in another tab" in seen.get("stale_tab_message", "")
    assert seen["after_done_url"] == f"/notes/{ids.index('diabetes_followup') + 1}?filter=all"  # the next one to review

    # the saved file: the coder's codes with their evidence, the decisions, the suggestion
    line = next(json.loads(x) for x in out.read_text().splitlines() if json.loads(x)["id"] == "diabetes_followup")
    text = line["text"]
    assert line["codes"] == ["E11.65", "E78.00", "I10", "E11.42"]
    assert {text[e["start"]:e["end"]] for e in line["evidence"] if e["code"] == "E11.42"} == {"Diabetic peripheral polyneuropathy"}
    assert line["review"]["status"] == "reviewed"
    assert {d["code"]: d["verdict"] for d in line["review"]["decisions"]} == {
        "E11.65": "accepted", "E66.9": "rejected", "E78.5": "replaced", "I10": "accepted"}
    assert [s["code"] for s in line["review"]["suggestion"]["codes"]] == ["E11.65", "E66.9", "E78.5", "I10"]

    # the HTML note: shown as text, its script never ran
    assert "<script>document.title = 'pwned'; window.pwned = true;</script>" in seen["html_note_text"]
    assert seen["pwned"] is False and "pwned" not in seen["title"] and seen["script_elements_in_note"] == 0
    assert "polyneuropathy" not in seen["app_log"].lower() and "POST /notes/" in seen["app_log"]
    assert shot.stat().st_size > 10_000
