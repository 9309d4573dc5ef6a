"""The review app over HTTP (Starlette's TestClient, the real app and store), its security,
the `review` command, and the reviewed file read by `evaluate` and `compile` as it is."""

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dspy
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from cli import cli
from data.specs import load_dataset
from review.app import create_app
from review.codes import CodeBook
from review.predictions import read_predictions
from review.store import ReviewStore
from tests.programs.scripted_server import ScriptedServer

REPO = Path(__file__).resolve().parents[2]
ORIGIN = {"Origin": "http://testserver"}


@pytest.fixture
def store(notes_file, predictions_file, kb, tmp_path):
    dataset = load_dataset(f"jsonl:{notes_file}")
    predicted, _ = read_predictions(predictions_file, {r.id: r.text for r in dataset.records})
    return ReviewStore(dataset.records, predicted, tmp_path / "reviewed.jsonl", CodeBook(kb), "ann")


@pytest.fixture
def log():
    return logging.getLogger("review-test")


@pytest.fixture
def client(store, log):
    with TestClient(create_app(store, log=log)) as running:
        yield running


def ids(store):
    return {record.id: i for i, record in enumerate(store.records)}


def saved(store) -> dict:
    return {line["id"]: line for line in map(json.loads, store.out.read_text().splitlines())}


def test_queue_with_progress_and_filters(client, store):
    page = client.get("/")
    assert page.status_code == 200
    assert all(note_id in page.text for note_id in ids(store)) and "<b>0</b> / 4 reviewed" in page.text
    assert client.get("/?filter=reviewed").text.count("/notes/") == 0
    differs = client.get("/?filter=gold").text  # the one note with gold codes, which the program missed in part
    assert "model differs from gold" in differs and differs.count("/notes/") == 1 and "diabetes_followup" in differs
    assert client.get("/?filter=nonsense").status_code == 404
    assert client.get("/notes/99").status_code == 404


def test_the_note_with_its_evidence_and_suggestions(client, store):
    n = ids(store)["diabetes_followup"]
    page = client.get(f"/notes/{n}").text
    span = re.search(r'<span data-o="(\d+)" data-keys="s3" title="I10 Essential \(primary\) hypertension" '
                     r'class="ev c3 pending">([^<]*)</span>', page)
    assert span and span.group(2) == "Essential hypertension, above goal."
    assert store.record(n).text[int(span.group(1)):].startswith(span.group(2))
    heading = store.record(n).text.index("ASSESSMENT AND PLAN:")
    assert f'<b data-o="{heading}" class="heading">ASSESSMENT AND PLAN:</b>' in page
    assert "rerank: proposed Essential hypertension: I10" in page  # the trace, folded
    assert page.count('class="card c') == 4 and "4 to decide" in page
    gold = re.search(r'<details id="gold".*?</details>', page, re.S).group(0)  # folded until asked for
    assert "<code>E11.42</code> Type 2 diabetes mellitus with diabetic polyneuropathy" in gold
    assert "(not among the coder's codes)" in gold and "✓" not in gold


def test_accept_reject_replace_add_remove_done(client, store):
    n = ids(store)["diabetes_followup"]
    post = lambda path, **form: client.post(f"/notes/{n}/{path}", data=form, headers=ORIGIN)
    assert post("suggestions/0", verdict="accepted", seen="pending").status_code == 200
    answer = post("suggestions/1", verdict="rejected", seen="pending", reason="BMI is not obesity here")
    assert answer.status_code == 200 and "Reason: BMI is not obesity here" in answer.text
    hits = client.get("/search", params={"q": "pure hypercholesterolemia"}).text
    chosen = re.search(r'data-code="([^"]+)"', hits).group(1)
    assert chosen == "E78.00"
    answer = post("suggestions/2", verdict="replaced", seen="pending", code=chosen)
    assert "→ <code>E78.00</code> Pure hypercholesterolemia, unspecified" in answer.text
    text = store.record(n).text
    start = text.index("Diabetic peripheral polyneuropathy")
    answer = post("added", code="E11.42", start=str(start), end=str(start + 34))
    assert answer.status_code == 200 and 'data-keys="a0"' in answer.text and 'hx-swap-oob="true"' in answer.text
    answer = client.post(f"/notes/{n}/done", data={"done": "1"}, headers={**ORIGIN, "HX-Request": "true"})
    assert answer.status_code == 422 and "decide I10 first" in answer.text
    post("suggestions/3", verdict="accepted", seen="pending")
    answer = client.post(f"/notes/{n}/done", data={"done": "1", "filter": "all"}, headers={**ORIGIN, "HX-Request": "true"})
    assert answer.status_code == 200 and answer.headers["HX-Redirect"] == f"/notes/{n + 1}?filter=all"
    line = saved(store)["diabetes_followup"]
    assert line["codes"] == ["E11.65", "E78.00", "I10", "E11.42"]
    assert {"code": "E11.42", "start": start, "end": start + 34} in line["evidence"]
    assert line["review"]["status"] == "reviewed"
    assert client.get(f"/api/notes/{n}").json() == line
    answer = post("added/remove", key=f"E11.42@{start}-{start + 34}")
    assert answer.status_code == 200 and saved(store)["diabetes_followup"]["codes"] == ["E11.65", "E78.00", "I10"]
    assert "<b>1</b> / 4 reviewed" in client.get("/?filter=reviewed").text


def test_a_stale_tab_gets_the_current_state_not_an_overwrite(client, store):
    n = ids(store)["diabetes_followup"]
    client.post(f"/notes/{n}/suggestions/0", data={"verdict": "rejected", "seen": "pending"}, headers=ORIGIN)
    stale = client.post(f"/notes/{n}/suggestions/0", data={"verdict": "accepted", "seen": "pending"}, headers=ORIGIN)
    assert stale.status_code == 409 and "changed in another tab (now rejected)" in stale.text
    assert saved(store)["diabetes_followup"]["review"]["decisions"][0]["verdict"] == "rejected"
    bad = client.post(f"/notes/{n}/suggestions/1", data={"verdict": "replaced", "seen": "pending", "code": "E66"},
                      headers=ORIGIN)
    assert bad.status_code == 422 and "E66 is not billable" in bad.text
    assert client.post(f"/notes/{n}/added", data={"code": "I10", "start": "x"}, headers=ORIGIN).status_code == 422


def test_search_offers_billable_codes_only(client):
    hits = client.get("/search", params={"q": "E11"}).text
    codes = re.findall(r'data-code="([^"]+)"', hits)
    assert codes and "E11" not in codes and all(c.startswith("E11.") for c in codes[:5])
    assert "No billable code" in client.get("/search", params={"q": "qwxzv"}).text


def test_writes_must_come_from_the_page(store, log):
    n = ids(store)["diabetes_followup"]
    form = {"verdict": "accepted", "seen": "pending"}
    with TestClient(create_app(store, allowed_hosts={"testserver"}, log=log)) as client:
        assert client.post(f"/notes/{n}/suggestions/0", data=form).status_code == 403
        assert client.post(f"/notes/{n}/suggestions/0", data=form, headers={"Origin": "http://evil.example"}).status_code == 403
        assert client.post(f"/notes/{n}/suggestions/0", data=form, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
        assert not store.out.exists()
        assert client.post(f"/notes/{n}/suggestions/0", data=form, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
        assert client.get("/", headers={"Host": "attacker.example"}).status_code == 421


def test_a_note_written_as_html_is_shown_as_text(client, store):
    page = client.get(f"/notes/{ids(store)['html-note']}")
    assert "<script>document.title" not in page.text and "<img src=x" not in page.text and "<b>not bold" not in page.text
    assert "&lt;script&gt;document.title = &#39;pwned&#39;" in page.text and "&lt;b&gt;not bold&lt;/b&gt;" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"


def test_the_log_names_requests_never_note_words(client, store, caplog):
    n = ids(store)["diabetes_followup"]
    text = store.record(n).text
    start = text.index("Diabetic peripheral polyneuropathy")
    with caplog.at_level(logging.INFO, logger="review-test"):
        client.get("/search", params={"q": "Diabetic peripheral polyneuropathy"})
        client.post(f"/notes/{n}/added", data={"code": "E11.42", "start": start, "end": start + 34}, headers=ORIGIN)
        client.post(f"/notes/{n}/suggestions/1", data={"verdict": "rejected", "seen": "pending", "reason": "BMI 31 only"},
                    headers=ORIGIN)
        client.get(f"/notes/{n}")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert re.search(r"^POST /notes/\d+/added 200 \d+ ms$", logged, re.M)
    assert "GET /search 200" in logged
    for words in ("polyneuropathy", "Diabetic", "BMI", "hypertension", "q="):
        assert words not in logged


def test_summary_as_judged_by_the_coder(client, store):
    n = ids(store)["diabetes_followup"]
    for i, verdict in enumerate(["accepted", "rejected", "accepted", "accepted"]):
        client.post(f"/notes/{n}/suggestions/{i}", data={"verdict": verdict, "seen": "pending"}, headers=ORIGIN)
    client.post(f"/notes/{n}/done", data={"done": "1"}, headers=ORIGIN)
    summary = client.get("/api/summary").json()
    assert summary["reviewed"] == 1 and summary["overall"]["precision"] == 0.75 and summary["overall"]["recall"] == 1.0
    assert summary["most_rejected"] == ["E66.9"]
    page = client.get("/summary").text
    assert "75.0%" in page and "Obesity, unspecified" in page


def test_the_reviewed_file_feeds_evaluate_and_compile(client, store, predictions_file, kb_path, tmp_path):
    n = ids(store)["diabetes_followup"]
    for i, verdict in enumerate(["accepted", "rejected", "accepted", "accepted"]):
        client.post(f"/notes/{n}/suggestions/{i}", data={"verdict": verdict, "seen": "pending"}, headers=ORIGIN)
    client.post(f"/notes/{n}/done", data={"done": "1"}, headers=ORIGIN)
    runner = CliRunner()
    scored = runner.invoke(cli, ["evaluate", "--dataset", f"jsonl:{store.out}", "--predictions", str(predictions_file),
                                 "--db", str(kb_path), "--json"])
    assert scored.exit_code == 0, scored.output
    micro = json.loads(scored.output)["micro"]
    assert (micro["precision"], micro["recall"]) == (0.75, 1.0)  # the summary's figures
    saved_cache = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    try:
        with ScriptedServer() as server:
            compiled = runner.invoke(cli, [
                "compile", "--program", "medcoder", "--model", "scripted", "--api-base", server.url,
                "--train", f"jsonl:{store.out}", "--dev", f"jsonl:{store.out}", "--optimizer", "gold-demos",
                "--max-demos", "2", "--out", str(tmp_path / "compiled.json"), "--db", str(kb_path), "--json"])
    finally:
        dspy.cache = saved_cache
    assert compiled.exit_code == 0, compiled.output
    state = json.loads((tmp_path / "compiled.json").read_text())
    assert "E78.5" in json.dumps(state["state"]) and "E66.9" not in json.dumps(state["state"]["rerank"])


def test_the_review_command_serves_on_loopback_and_stops_cleanly(notes_file, predictions_file, kb_path, tmp_path):
    import httpx

    out = tmp_path / "reviewed.jsonl"
    process = subprocess.Popen(
        [sys.executable, "cli.py", "review", "--dataset", f"jsonl:{notes_file}", "--predictions", str(predictions_file),
         "--out", str(out), "--port", "0", "--db", str(kb_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "COLUMNS": "300"})
    try:
        first = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", first).group(0)
        assert "0 of 4 notes reviewed" in first
        with httpx.Client(base_url=url) as http:
            assert http.get("notes/1").status_code == 200
            answer = http.post("notes/1/suggestions/0", data={"verdict": "accepted", "seen": "pending"},
                               headers={"Origin": url.rstrip("/")})
            assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    assert json.loads(out.read_text())["codes"] == ["E11.65"]
    assert "POST /notes/1/suggestions/0 200" in err and "Stopped: 0 of 4 notes reviewed" in err
    assert "Traceback" not in err and "hypertension" not in err.lower()


@pytest.mark.parametrize(("extra", "message"), [
    (["--predictions", "missing.jsonl"], "predictions file not found"),
    (["--host", "192.0.2.1"], "warning: serving on 192.0.2.1"),
])
def test_review_command_errors_are_one_line(notes_file, predictions_file, kb_path, tmp_path, extra, message):
    args = ["review", "--dataset", f"jsonl:{notes_file}", "--predictions", str(predictions_file),
            "--out", str(tmp_path / "out.jsonl"), "--port", "0", "--db", str(kb_path), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("error:")


def test_a_port_in_use_is_a_one_line_error(notes_file, predictions_file, kb_path, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["review", "--dataset", f"jsonl:{notes_file}", "--predictions",
                                          str(predictions_file), "--out", str(tmp_path / "o.jsonl"),
                                          "--port", str(port), "--db", str(kb_path)])
    assert result.exit_code == 1 and f"port {port} on 127.0.0.1 is in use" in result.output
