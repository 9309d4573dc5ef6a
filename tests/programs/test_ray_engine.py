"""`predict --engine ray` and `evaluate --program --engine ray` on real Ray clusters, inside a
private network namespace the test creates (only loopback exists, so Ray cannot dial the
machine's network address, and every process Ray starts ends with the namespace): the Ray
engine's predictions equal the threads engine's with `--model none` (on a head started with
`ray start --head`, its token handed to the driver) and with the scripted model and a compiled
program (whose demos reach the workers without its file); the local cluster `predict` starts is
killed mid-run with SIGKILL and the rerun resumes without losing or repeating a note, and
Ctrl-C on it exits 130 in one line leaving whole notes; a wrong
token and a dead model are one line each; every TCP connection `ss` saw was on 127.0.0.1.

Needs root (for the namespace), `unshare`, `ip`, `ss` and the `ray` extra; skipped, saying so,
elsewhere. About 2 to 3 minutes on 2 cores: one session, seven Ray runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from programs.ray_engine import INSTALL
from tests.programs.ray_session import KILL_AFTER

REPO = Path(__file__).resolve().parents[2]
LOOPBACK = ("127.0.0.1:", "[::ffff:127.0.0.1]:")


def missing() -> str:
    if os.geteuid() != 0:
        return "needs root for a private network namespace (unshare --net)"
    for tool in ("unshare", "ip", "ss"):
        if shutil.which(tool) is None:
            return f"needs {tool} (util-linux, iproute2)"
    try:
        import ray  # noqa: F401
    except ImportError:
        return f"needs Ray: {INSTALL}"
    return ""


in_namespace = pytest.mark.skipif(bool(missing()), reason=missing() or "ready")


@pytest.fixture(scope="module")
def seen(kb_path, tmp_path_factory) -> dict:
    report = tmp_path_factory.mktemp("ray") / "report.json"
    done = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--", sys.executable, "-m", "tests.programs.ray_session",
         "--db", str(kb_path), "--report", str(report)],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(report.read_text())
    print(f"\nRay session, seconds per run: {seen['seconds']}")
    return seen


def by_id(lines: list[dict]) -> dict[str, dict]:
    return {line["id"]: line for line in lines}


@in_namespace
def test_only_loopback_and_every_connection_on_127_0_0_1(seen):
    assert seen["interfaces"] == ["lo"] and seen["routes"] == ""
    connections = [socket for socket in seen["sockets"] if socket[0] != "LISTEN"]
    assert len(connections) > 20, "ss saw Ray's connections"
    assert all(local.startswith(LOOPBACK) and peer.startswith(LOOPBACK) for _, local, peer in connections), connections


@in_namespace
def test_ray_address_with_its_token_equals_threads_in_input_order(seen):
    assert seen["head"]["status"] == 0 and seen["head_stopped"] == 0
    assert seen["ray_address"]["status"] == 0 and seen["ray_address"]["stderr"] == ""
    summary = json.loads(seen["ray_address"]["stdout"])
    assert summary["written"] == 24 and [f["id"] for f in summary["failed"]] == ["empty-note"]
    threads = by_id(seen["threads-none"])
    assert [line["id"] for line in seen["ray-address"]] == [i for i in seen["note_ids"] if i in threads]
    assert seen["ray-address"] == [threads[line["id"]] for line in seen["ray-address"]]


@in_namespace
def test_evaluate_codes_on_ray_and_scores(seen):
    evaluated = seen["ray_evaluate"]
    assert evaluated["status"] == 0, evaluated["stderr"]
    payload = json.loads(evaluated["stdout"])
    assert payload["run"]["written"] == 24 and "micro" in json.dumps(payload)
    threads = by_id(seen["threads-none"])
    assert seen["ray-evaluate"] == [threads[line["id"]] for line in seen["ray-evaluate"]] and len(seen["ray-evaluate"]) == 24


@in_namespace
def test_killed_local_run_resumes_each_note_once_equal_to_threads(seen):
    killed, resumed = seen["killed"], seen["resumed"]
    assert killed["status"] == -9 and killed["saved"] >= 4 and killed["stderr"] == ""
    assert resumed["status"] == 0 and resumed["stderr"] == ""
    summary = json.loads(resumed["stdout"])
    assert summary["skipped"] == killed["saved"] and summary["written"] == 24 - killed["saved"]
    ids = [line["id"] for line in seen["ray-killed"]]
    assert sorted(ids) == sorted(i for i in seen["note_ids"] if i != "empty-note"), "every note exactly once"
    threads = by_id(seen["threads-scripted"])
    assert all(line == threads[line["id"]] for line in seen["ray-killed"]), "codes, traces and usage of the threads run"
    assert all(line["result"]["usage"] for line in seen["ray-killed"]), "the scripted model was called"
    resumed_lines = seen["ray-killed"][killed["saved"]:]
    for key in ("prompt_tokens", "completion_tokens"):
        total = sum(usage[key] for line in resumed_lines for usage in line["result"]["usage"].values())
        assert sum(counts[key] for counts in summary["usage"].values()) == total > 0, "usage totals of the run"


@in_namespace
def test_ctrl_c_on_a_local_cluster_exits_130_in_one_line_with_whole_notes(seen):
    interrupted = seen["interrupted"]
    assert interrupted["status"] == 130 and interrupted["stderr"].strip().splitlines() == ["interrupted"], interrupted
    ids = [line["id"] for line in seen["ray-interrupted"]]
    assert KILL_AFTER <= len(ids) < 24 and len(set(ids)) == len(ids)
    threads = by_id(seen["threads-scripted"])
    assert all(line == threads[line["id"]] for line in seen["ray-interrupted"])


@in_namespace
def test_the_knowledge_base_and_compiled_program_reach_the_workers_without_their_files(seen):
    assert seen["unpacked"], "the workers wrote the knowledge base from the bundle sent through the object store"
    prompts = seen["ray_prompts"]
    assert prompts["extract"] >= 20 and prompts["with_demo"] == prompts["extract"]


@in_namespace
def test_a_failing_model_stops_the_run_with_one_line_saying_how_to_resume(seen):
    dead = seen["ray_dead_model"]
    assert dead["status"] == 1 and dead["lines"] == 0
    lines = dead["stderr"].strip().splitlines()
    assert len(lines) == 1 and "failed after 0 retries: cannot reach the server" in lines[0]
    assert "0 of 25 notes are saved in" in lines[0] and lines[0].endswith("ray-dead-model.jsonl to resume")


@in_namespace
def test_wrong_token_is_one_line_and_writes_nothing(seen):
    wrong = seen["ray_wrong_token"]
    assert wrong["status"] == 1 and not wrong["wrote"]
    lines = wrong["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "RAY_AUTH_TOKEN" in lines[0]


def test_without_ray_the_engine_names_the_install_command(kb_path, tmp_path):
    shim = tmp_path / "shim" / "ray"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    notes = tmp_path / "notes.jsonl"
    notes.write_text(json.dumps({"id": "a", "text": "Assessment: hypertension."}) + "\n")
    done = subprocess.run(
        [sys.executable, "cli.py", "predict", "--input", str(notes), "--output", str(tmp_path / "out.jsonl"),
         "--engine", "ray", "--db", str(kb_path)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(shim.parent)}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1 and not (tmp_path / "out.jsonl").exists()
    assert done.stderr.strip() == f"error: --engine ray needs Ray, which is not installed: {INSTALL}"
