"""`cli.py serve` in a process of its own and `predict --server` against it, over real HTTP on
127.0.0.1: the same predictions as `predict` in one process (with no model and with the scripted
LM server), resumable, and a service that dies or a model that fails loses no saved note."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.programs.scripted_server import ECHO_SCRIPT, ScriptedServer
from tests.programs.synthetic import write_problem_notes

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "data" / "examples"


@contextmanager
def serving(*args: str, env: dict | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """`cli.py serve ARGS --port 0` once it listens, and its URL; stopped with Ctrl-C after (what
    it wrote on stderr is then the process's `said`)."""
    process = subprocess.Popen([sys.executable, "cli.py", "serve", *args, "--port", "0", "--json"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = process.stdout.readline()
        assert ready.startswith('{"url": "http://127.0.0.1:'), process.communicate(timeout=60)[1]
        yield process, json.loads(ready)["url"]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.said = process.communicate(timeout=60)[1]  # what it wrote on stderr


def run(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *map(str, args)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def lines(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == len({row["id"] for row in rows}), "a note written twice"
    return {row["id"]: row for row in rows}


@pytest.fixture(scope="module")
def rules_service(kb_path):
    with serving("--model", "none", "--threads", "4", "--db", str(kb_path)) as running:
        yield running


@pytest.fixture
def notes(tmp_path) -> Path:
    path = tmp_path / "notes.jsonl"
    rows = [{"id": p.stem, "text": p.read_text()} for p in sorted(EXAMPLES.glob("*.txt"))] + [{"id": "empty", "text": " "}]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_batch_coded_by_the_service_is_the_batch_coded_here(rules_service, kb_path, notes, tmp_path):
    process, url = rules_service
    here, there = tmp_path / "here.jsonl", tmp_path / "there.jsonl"
    done = run("predict", "--input", notes, "--output", here, "--model", "none", "--db", kb_path, "--json")
    assert done.returncode == 0, done.stderr
    done = run("predict", "--input", notes, "--output", there, "--server", url, "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["written"], summary["skipped"]) == (3, 0)
    assert summary["failed"] == [{"id": "empty", "error": "the note is empty: give a clinical note with some text"}]
    assert lines(there) == lines(here) and len(lines(here)) == 3
    # a rerun resumes: a cut last line is written again, nothing twice
    text = there.read_text()
    there.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 20])
    done = run("predict", "--input", notes, "--output", there, "--server", url, "--json")
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["written"], json.loads(done.stdout)["skipped"]) == (1, 2)
    assert lines(there) == lines(here)


def test_the_service_says_where_and_what_it_codes_and_how_many_notes_it_coded(kb_path):
    with serving("--model", "none", "--threads", "3", "--db", str(kb_path)) as (process, url):
        assert urllib.request.urlopen(url + "v1/health", timeout=10).read() == \
            b'{"program":"medcoder","model":"none","threads":3,"coded":0}'
    said = [line for line in process.said.splitlines() if line]
    assert process.returncode == 130 and said[-2:] == ["Stopped: 0 notes coded", "interrupted"]
    text = subprocess.Popen([sys.executable, "cli.py", "serve", "--model", "none", "--port", "0", "--db", str(kb_path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = text.stdout.readline()
    text.send_signal(signal.SIGINT)
    text.communicate(timeout=60)
    assert line.startswith("Coding with medcoder (none, 8 threads) at http://127.0.0.1:") and "predict --server" in line


def test_one_note_coded_by_the_service_prints_as_predict_does(rules_service, kb_path):
    _, url = rules_service
    note = EXAMPLES / "diabetes_followup.txt"
    there = run("predict", note, "--server", url, "--json")
    here = run("predict", note, "--model", "none", "--db", kb_path, "--json")
    assert there.returncode == here.returncode == 0, there.stderr + here.stderr
    assert json.loads(there.stdout) == json.loads(here.stdout)
    table = run("predict", note, "--server", url)
    assert table.returncode == 0 and "E11.3293" in table.stdout and "rerank: 5 proposed" in table.stdout


def test_evaluate_scores_what_the_service_codes_as_what_it_codes_here(rules_service, kb_path, tmp_path):
    _, url = rules_service
    dataset = tmp_path / "gold.jsonl"
    gold = {"diabetes_followup": ["E11.3293", "I10", "E78.5"], "knee_injury": ["S83.241A"], "asthma_visit": ["J45.909"]}
    dataset.write_text("".join(json.dumps({"id": i, "text": (EXAMPLES / f"{i}.txt").read_text(), "codes": codes}) + "\n"
                               for i, codes in gold.items()))
    there = run("evaluate", "--dataset", f"jsonl:{dataset}", "--server", url, "--output", tmp_path / "there.jsonl",
                "--db", kb_path, "--json")
    here = run("evaluate", "--dataset", f"jsonl:{dataset}", "--program", "medcoder", "--model", "none",
               "--output", tmp_path / "here.jsonl", "--db", kb_path, "--json")
    assert there.returncode == here.returncode == 0, there.stderr + here.stderr
    scored, expected = json.loads(there.stdout), json.loads(here.stdout)
    assert scored["micro"] == expected["micro"] and scored["stages"] == expected["stages"] and 0 < scored["micro"]["f1"] < 1
    assert scored["run"]["written"] == 3 and lines(tmp_path / "there.jsonl") == lines(tmp_path / "here.jsonl")
    table = run("evaluate", "--dataset", f"jsonl:{dataset}", "--server", url, "--output", tmp_path / "there.jsonl",
                "--db", kb_path)
    assert table.returncode == 0 and "medcoder (none) on" in table.stdout
    assert "0 coded now, 3 already there" in " ".join(table.stdout.split())
    refused = run("evaluate", "--dataset", f"jsonl:{dataset}", "--server", url, "--predictions", tmp_path / "here.jsonl")
    assert refused.returncode == 2 and "--predictions cannot go with --server" in refused.stderr


@pytest.mark.parametrize("option", [["--model", "none"], ["--program", "clh"], ["--threads", "2"], ["--db", "kb.duckdb"],
                                    ["--engine", "ray"]])
def test_options_of_the_service_do_not_go_with_server(option, notes, tmp_path):
    done = run("predict", "--input", notes, "--output", tmp_path / "out.jsonl", "--server", "http://127.0.0.1:9/", *option)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{option[0]} cannot go with --server" in done.stderr or "--engine ray" in done.stderr


def test_an_api_key_in_the_environment_is_the_service_s_own_business(rules_service, notes, tmp_path):
    done = run("predict", "--input", notes, "--output", tmp_path / "out.jsonl", "--server", rules_service[1],
               env={**os.environ, "ICD_API_KEY": "sk-for-another-model"})
    assert done.returncode == 0, done.stderr


def test_no_service_at_the_address_is_one_line_and_writes_nothing(notes, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out.jsonl"
    done = run("predict", "--input", notes, "--output", out, "--server", f"http://127.0.0.1:{port}/")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"the coding service at http://127.0.0.1:{port} cannot be reached: Connection refused (start one with `cli.py serve`)" \
        in " ".join(done.stderr.split())
    assert not out.exists()
    done = run("predict", "--input", notes, "--output", out, "--server", "127.0.0.1:8766")
    assert done.returncode == 2 and "is not a URL" in done.stderr


def test_scripted_model_through_the_service_gives_the_same_lines_and_usage(kb_path, tmp_path):
    notes, here, there = tmp_path / "notes.jsonl", tmp_path / "here.jsonl", tmp_path / "there.jsonl"
    write_problem_notes(notes, 12, 3)
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache")}
    with ScriptedServer(ECHO_SCRIPT) as lm_server:
        model = ["--program", "medcoder", "--model", "scripted", "--api-base", lm_server.url, "--db", str(kb_path)]
        done = run("predict", "--input", notes, "--output", here, *model, "--threads", "4", "--json", env=env)
        assert done.returncode == 0, done.stderr
        usage = json.loads(done.stdout)["usage"]
        assert len(lm_server.requests) == 12 * 4  # an extract and three re-ranks a note
        with serving(*model, "--threads", "4", env={**env, "DSPY_CACHEDIR": str(tmp_path / "service-cache")}) as (_, url):
            done = run("predict", "--input", notes, "--output", there, "--server", url, "--json")
        assert done.returncode == 0, done.stderr
        assert len(lm_server.requests) == 2 * 12 * 4
    assert lines(there) == lines(here)
    assert json.loads(done.stdout)["usage"] == usage and usage["hosted_vllm/scripted"]["prompt_tokens"] == 100 * 12 * 4


def test_a_service_that_dies_mid_batch_loses_no_saved_note_and_a_rerun_finishes(kb_path, tmp_path):
    notes, out = tmp_path / "notes.jsonl", tmp_path / "out.jsonl"
    ids = write_problem_notes(notes, 40, 3)
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache")}
    with ScriptedServer(delay=0.2) as lm_server:
        model = ["--program", "medcoder", "--model", "scripted", "--api-base", lm_server.url, "--db", str(kb_path),
                 "--threads", "2"]
        with serving(*model, env=env) as (service, url):
            client = subprocess.Popen([sys.executable, "cli.py", "predict", "--input", str(notes), "--output", str(out),
                                       "--server", url], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            started = time.monotonic()
            while (not out.exists() or len(out.read_text().splitlines()) < 3) and time.monotonic() - started < 120:
                time.sleep(0.05)
            service.kill()
            _, stderr = client.communicate(timeout=120)
        assert client.returncode == 1 and "Traceback" not in stderr
        saved = len(lines(out))
        message = " ".join(stderr.split())
        assert "stopped answering" in message or "cannot be reached" in message, message
        assert f"{saved} of 40 notes are saved in {out}: rerun with --output {out} to resume" in message
        assert 3 <= saved < 40
        with serving(*model, env=env) as (_, url):
            done = run("predict", "--input", notes, "--output", out, "--server", url, "--json")
        assert done.returncode == 0, done.stderr
        assert (json.loads(done.stdout)["skipped"], json.loads(done.stdout)["written"]) == (saved, 40 - saved)
    assert sorted(lines(out)) == sorted(ids)


def test_the_model_failing_at_the_service_stops_the_batch_with_its_error(kb_path, notes, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out.jsonl"
    with serving("--program", "medcoder", "--model", "scripted", "--api-base", f"http://127.0.0.1:{port}/v1",
                 "--retries", "0", "--db", str(kb_path)) as (_, url):
        done = run("predict", "--input", notes, "--output", out, "--server", url)
    message = " ".join(done.stderr.split())
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot reach the server" in message and f"0 of 4 notes are saved in {out}" in message
    assert not out.exists()
