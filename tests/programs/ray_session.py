"""Real Ray clusters, run by test_ray_engine.py inside a private network and process namespace
(`unshare --net --pid --fork --mount-proc`: only loopback exists, and every process Ray starts
ends with this one): brings loopback up, serves the scripted model on it, then codes the same
notes with the threads engine and with the Ray engine - a head started with `ray start --head`
(token authentication, the token handed to the driver in RAY_AUTH_TOKEN) reached through
`--ray-address`, and the local cluster `predict` starts itself, killed mid-run and resumed, and
interrupted with Ctrl-C -
while watching every TCP socket with `ss`. Writes what it saw to a JSON report the test checks.

    python -m tests.programs.ray_session --db KB --report R
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from icd_graph.bundle import pack
from tests.programs.scripted_server import ECHO_SCRIPT, ScriptedServer
from tests.programs.synthetic import write_problem_notes

REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
NOTES = 24
KILL_AFTER = 4
COMPILED = REPO / "programs" / "compiled" / "local.json"


class Sockets:
    """Every TCP socket `ss` lists while the runs go on: (state, local address, peer address)."""

    def __init__(self):
        self.seen: set[tuple[str, str, str]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            listed = subprocess.run(["ss", "-tanH"], capture_output=True, text=True).stdout
            for line in listed.splitlines():
                fields = line.split()
                if len(fields) >= 5:
                    self.seen.add((fields[0], fields[3], fields[4]))
            self._stop.wait(0.2)

    def __enter__(self) -> Sockets:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


SECONDS: dict[str, float] = {}


def predict(work: Path, notes: Path, output: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "cli.py", "predict", "--input", str(notes), "--output", str(output), "--json", *args]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env or os.environ.copy(), capture_output=True, text=True, timeout=900)
    SECONDS[output.stem] = SECONDS.get(output.stem, 0) + round(time.monotonic() - started, 1)
    return done


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run(args) -> dict:
    report: dict = {}
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    links = subprocess.run(["ip", "-o", "link", "show"], check=True, capture_output=True, text=True).stdout
    report["interfaces"] = re.findall(r"^\d+: ([^:@]+)", links, re.M)
    report["routes"] = subprocess.run(["ip", "route", "show"], check=True, capture_output=True, text=True).stdout.strip()
    work = Path(tempfile.mkdtemp(prefix="ray-session-"))
    notes = work / "notes.jsonl"
    write_problem_notes(notes, NOTES)
    with notes.open("a") as handle:  # a note that cannot be coded: listed as failed, by both engines
        handle.write(json.dumps({"id": "empty-note", "text": "   "}) + "\n")
    db = ["--db", args.db]
    unpacked = Path(tempfile.gettempdir()) / "icd-coder-kb" / pack(Path(args.db)).digest
    shutil.rmtree(unpacked, ignore_errors=True)  # the workers must write it from the bundle they are sent
    token = secrets.token_hex(16)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": str(work / "home")}
    with Sockets() as sockets, ScriptedServer(ECHO_SCRIPT, delay=0.2) as server:
        model = ["--model", "scripted", "--api-base", server.url]

        # the threads engine: the reference
        done = predict(work, notes, work / "threads-none.jsonl", *db, "--threads", "2", env=env)
        report["threads_none"] = {"status": done.returncode, "stderr": done.stderr, "stdout": done.stdout}
        done = predict(work, notes, work / "threads-scripted.jsonl", *db, *model, "--threads", "4",
                       "--program", str(COMPILED), env={**env, "DSPY_CACHEDIR": str(work / "cache-threads")})
        report["threads_scripted"] = {"status": done.returncode, "stderr": done.stderr}

        # a head started as a cluster is, with token authentication
        head_env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, "DSPY_CACHEDIR": str(work / "cache-head")}
        started = subprocess.run([RAY, "start", "--head", "--port", "6390", "--num-cpus", "2", "--include-dashboard=false",
                                  "--disable-usage-stats"], env=head_env, capture_output=True, text=True, timeout=300)
        report["head"] = {"status": started.returncode, "output": (started.stdout + started.stderr)[-2000:]}
        address = ["--engine", "ray", "--ray-address", "127.0.0.1:6390"]
        try:
            done = predict(work, notes, work / "ray-address.jsonl", *db, *address, "--workers", "2", env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
            report["ray_address"] = {"status": done.returncode, "stderr": done.stderr, "stdout": done.stdout}
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "cli.py", "evaluate", "--dataset", f"jsonl:{notes}", "--program", "medcoder", *db, *address,
                 "--workers", "1", "--output", str(work / "ray-evaluate.jsonl"), "--json"],
                cwd=REPO, env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}, capture_output=True, text=True, timeout=900)
            SECONDS["ray-evaluate"] = round(time.monotonic() - started, 1)
            report["ray_evaluate"] = {"status": done.returncode, "stderr": done.stderr, "stdout": done.stdout}
            done = predict(work, notes, work / "ray-no-token.jsonl", *db, *address, env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 32,
                                                                              "RAY_gcs_server_port_wait_time_s": "3"})
            report["ray_wrong_token"] = {"status": done.returncode, "stderr": done.stderr,
                                         "wrote": (work / "ray-no-token.jsonl").exists()}

            # a model that cannot be reached stops the run: one line, nothing half-written, resumable
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                closed = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
            done = predict(work, notes, work / "ray-dead-model.jsonl", *db, *address, "--model", "scripted", "--api-base", closed,
                           "--retries", "0", "--workers", "1", "--threads", "2",
                           env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
            report["ray_dead_model"] = {"status": done.returncode, "stderr": done.stderr,
                                        "lines": len(lines(work / "ray-dead-model.jsonl"))}

            # the local cluster `predict` starts, killed (SIGKILL) once it has saved some notes
            output = work / "ray-killed.jsonl"
            before = len(server.requests)
            command = [sys.executable, "cli.py", "predict", "--input", str(notes), "--output", str(output), "--json", *db,
                       *model, "--program", str(COMPILED), "--engine", "ray", "--workers", "2", "--threads", "1"]
            killed = subprocess.Popen(command, cwd=REPO, env={**env, "DSPY_CACHEDIR": str(work / "cache-local")},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            started_at = time.monotonic()
            while len(lines(output)) < KILL_AFTER and killed.poll() is None and time.monotonic() - started_at < 600:
                time.sleep(0.05)
            killed.send_signal(signal.SIGKILL)
            report["killed"] = {"stderr": killed.communicate()[1], "status": killed.returncode, "saved": len(lines(output)),
                                "seconds": round(time.monotonic() - started_at, 1)}

            # Ctrl-C, as a terminal sends it: SIGINT to the command's whole process group
            stopped = work / "ray-interrupted.jsonl"
            interrupted = subprocess.Popen([str(stopped) if part == str(output) else part for part in command], cwd=REPO,
                                           env={**env, "DSPY_CACHEDIR": str(work / "cache-interrupted")}, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, text=True, start_new_session=True)
            started_at = time.monotonic()
            while len(lines(stopped)) < KILL_AFTER and interrupted.poll() is None and time.monotonic() - started_at < 600:
                time.sleep(0.05)
            os.killpg(interrupted.pid, signal.SIGINT)
            started_at = time.monotonic()
            try:
                stderr = interrupted.communicate(timeout=120)[1]
            except subprocess.TimeoutExpired:
                os.killpg(interrupted.pid, signal.SIGKILL)
                stderr = "hung: " + interrupted.communicate()[1]
            report["interrupted"] = {"stderr": stderr, "status": interrupted.returncode,
                                     "seconds": round(time.monotonic() - started_at, 1)}

            # resumed on the head
            done = predict(work, notes, output, *db, *model, "--program", str(COMPILED), *address, "--threads", "2",
                           env={**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token})
            report["resumed"] = {"status": done.returncode, "stderr": done.stderr, "stdout": done.stdout}
            demo = json.loads(COMPILED.read_text())["state"]["extract"]["demos"][0]["note"][:80]
            prompts = [json.dumps(request["messages"]) for request in server.requests[before:]]
            report["ray_prompts"] = {"requests": len(prompts), "extract": sum("[[ ## diagnoses ## ]]" in p for p in prompts),
                                     "with_demo": sum(json.dumps(demo)[1:-1] in p for p in prompts)}
        finally:
            stopped = subprocess.run([RAY, "stop", "--force"], env=head_env, capture_output=True, text=True, timeout=120)
            report["head_stopped"] = stopped.returncode
        report["sockets"] = sorted(sockets.seen)
    for name in ("threads-none", "threads-scripted", "ray-address", "ray-evaluate", "ray-killed", "ray-interrupted"):
        report[name] = lines(work / f"{name}.jsonl")
    report["unpacked"] = (unpacked / "icd10cm.duckdb").is_file()
    report["seconds"] = SECONDS
    report["note_ids"] = [json.loads(line)["id"] for line in notes.read_text().splitlines()]
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--report", required=True)
    args = parser.parse_args()
    Path(args.report).write_text(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
