"""Speed-up and efficiency of `predict --input --threads N` against a local OpenAI-compatible
server that answers every call after a fixed latency (the scripted server of the tests, whose
extract stage agrees with the rules: a note of P problems is 1 extract + P re-rank calls for
MedCoder). Each run is one `cli.py predict` process timed from outside, start-up and exit
included, on notes of its own (no answer comes from DSPy's cache, whose folder exists, as after
a user's first run); efficiency = time(1 thread) / (N * time(N threads)). Also reported: the
seconds from the first model request to the last answer, the part of a run that concurrency
shortens, and the efficiency over that part alone.

With --service, each row's notes are coded by a coding service (`cli.py serve --threads N`,
started and loaded before the clock starts) and the process timed is `predict --server`: the
start-up of DSPy, medspaCy and the search index is paid once, by the service, not by the run.

    python bench/threads_bench.py --db KB.duckdb [--notes 24] [--latency 0.5] [--threads 1,2,4,8,16] [--program medcoder] [--service]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.programs.scripted_server import ECHO_SCRIPT, ScriptedServer  # noqa: E402
from tests.programs.synthetic import write_problem_notes  # noqa: E402


class TimedServer(ScriptedServer):
    """The scripted server, noting when each request arrived: `answer` is called once the fixed
    latency has passed, so a request arrived `delay` seconds before its answer is made."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.arrivals: list[float] = []

    def answer(self, messages: list[dict], as_json: bool = False) -> str | None:
        self.arrivals.append(time.perf_counter() - self.delay)
        return super().answer(messages, as_json=as_json)


def run(args, server: TimedServer, threads: int, number: int, folder: Path) -> dict:
    notes, output = folder / f"notes-{number}.jsonl", folder / f"preds-{number}.jsonl"
    write_problem_notes(notes, args.notes, args.problems, first=number * args.notes)
    env = {**os.environ, "DSPY_CACHEDIR": str(folder / "dspy-cache")}
    model = ["--program", args.program, "--model", "scripted", "--api-base", server.url, "--threads", str(threads), "--db", args.db]
    with serving(model, env) if args.service else nullcontext() as url:
        coding = ["--server", url] if url else model
        server.arrivals.clear()
        start = time.perf_counter()
        subprocess.run([sys.executable, "cli.py", "predict", "--input", str(notes), "--output", str(output), *coding, "--json"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        seconds = time.perf_counter() - start
    assert len(output.read_text().splitlines()) == args.notes
    calls = server.arrivals[-1] + args.latency - server.arrivals[0]
    return {"threads": threads, "seconds": round(seconds, 2), "calls": len(server.arrivals),
            "start_up": round(server.arrivals[0] - start, 2), "model_phase": round(calls, 2)}


@contextmanager
def serving(model: list[str], env: dict) -> Iterator[str]:
    """A coding service with `model`, once it has loaded and listens: its URL."""
    service = subprocess.Popen([sys.executable, "cli.py", "serve", *model, "--port", "0", "--json"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        yield json.loads(service.stdout.readline())["url"]
    finally:
        service.send_signal(signal.SIGINT)
        service.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--notes", type=int, default=24)
    parser.add_argument("--problems", type=int, default=3, help="Problems per note.")
    parser.add_argument("--latency", type=float, default=0.5, help="Seconds the server waits before each answer.")
    parser.add_argument("--threads", default="1,2,4,8,16")
    parser.add_argument("--program", default="medcoder")
    parser.add_argument("--service", action="store_true", help="Time predict --server against a loaded coding service.")
    args = parser.parse_args()
    counts = [int(n) for n in args.threads.split(",")]
    with tempfile.TemporaryDirectory() as name, TimedServer(ECHO_SCRIPT, delay=args.latency) as server:
        folder = Path(name)
        subprocess.run([sys.executable, "-c", "import dspy; dspy.cache"], env={**os.environ, "DSPY_CACHEDIR": str(folder / "dspy-cache")},
                       check=True)
        rows = [run(args, server, threads, number, folder) for number, threads in enumerate(counts)]
    base = next((row for row in rows if row["threads"] == 1), None)
    for row in rows:
        if base:
            row["speedup"] = round(base["seconds"] / row["seconds"], 2)
            row["efficiency"] = round(base["seconds"] / row["seconds"] / row["threads"], 2)
            row["model_phase_efficiency"] = round(base["model_phase"] / row["model_phase"] / row["threads"], 2)
        print(json.dumps({"notes": args.notes, "latency": args.latency, "program": args.program, "service": args.service, **row}))


if __name__ == "__main__":
    main()
