"""The Ray engine against the threads engine, and 2 Ray workers against 1, on this machine: a
local cluster (`ray start --head`, reached with --ray-address, so that each run's time is the
driver's and the workers', not the cluster's start) and the fixed-latency scripted server of the
tests (bench/threads_bench.py), all inside a private network namespace like the Ray tests (only
loopback exists; the script re-runs itself under `unshare`, as root). Each run is one
`cli.py predict --input` process on notes of its own, timed from outside; also reported: the
seconds from the first model request to the last answer, and the ratios.

    python bench/ray_bench.py --db KB.duckdb [--notes 120] [--latency 0.5] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.threads_bench import TimedServer  # noqa: E402
from tests.programs.scripted_server import ECHO_SCRIPT  # noqa: E402
from tests.programs.synthetic import write_problem_notes  # noqa: E402

INSIDE = "ICD_RAY_BENCH_INSIDE"
RAY = str(Path(sys.executable).with_name("ray"))


def run(args, server: TimedServer, folder: Path, number: int, name: str, engine: list[str], env: dict) -> dict:
    notes, output = folder / f"notes-{number}.jsonl", folder / f"preds-{number}.jsonl"
    write_problem_notes(notes, args.notes, args.problems, first=number * args.notes)
    server.arrivals.clear()
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "cli.py", "predict", "--input", str(notes), "--output", str(output), "--program", "medcoder",
         "--model", "scripted", "--api-base", server.url, "--db", args.db, "--json", *engine],
        cwd=ROOT, env=env, check=True, capture_output=True,
    )
    seconds = time.perf_counter() - start
    assert len(output.read_text().splitlines()) == args.notes
    return {"run": name, "seconds": round(seconds, 1), "calls": len(server.arrivals),
            "model_phase": round(server.arrivals[-1] + args.latency - server.arrivals[0], 1)}


def inside(args) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    folder = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    token = secrets.token_hex(16)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HOME": str(folder), "DSPY_CACHEDIR": str(folder / "dspy-cache"),
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    subprocess.run([sys.executable, "-c", "import dspy; dspy.cache"], env=env, check=True)
    started = time.perf_counter()
    subprocess.run([RAY, "start", "--head", "--port", "6391", "--num-cpus", "2", "--include-dashboard=false",
                    "--disable-usage-stats"], env=env, check=True, capture_output=True)
    print(json.dumps({"run": "ray start --head", "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    t = str(args.threads)
    ray = ["--engine", "ray", "--ray-address", "127.0.0.1:6391", "--threads", t]
    plan = [
        ("threads", ["--threads", str(2 * args.threads)]),
        ("ray, 1 worker", [*ray, "--workers", "1"]),
        ("ray, 2 workers", [*ray, "--workers", "2"]),
    ]
    rows = {}
    try:
        with TimedServer(ECHO_SCRIPT, delay=args.latency) as server:
            for number, (name, engine) in enumerate(plan):
                rows[name] = run(args, server, folder, number, name, engine, env)
                print(json.dumps(rows[name]), flush=True)
    finally:
        subprocess.run([RAY, "stop", "--force"], env=env, capture_output=True)
    one, two, threads = rows["ray, 1 worker"], rows["ray, 2 workers"], rows["threads"]
    print(json.dumps({
        "notes": args.notes, "latency": args.latency, "threads per worker": args.threads,
        "2 workers / 1": round(one["seconds"] / two["seconds"], 2),
        "2 workers / 1, model phase": round(one["model_phase"] / two["model_phase"], 2),
        f"ray 2x{args.threads} / threads {2 * args.threads}": round(two["seconds"] / threads["seconds"], 2),
        f"ray 2x{args.threads} / threads {2 * args.threads}, model phase": round(two["model_phase"] / threads["model_phase"], 2),
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--notes", type=int, default=120)
    parser.add_argument("--problems", type=int, default=3, help="Problems per note.")
    parser.add_argument("--latency", type=float, default=0.5, help="Seconds the server waits before each answer.")
    parser.add_argument("--threads", type=int, default=2, help="Threads per Ray worker (the threads engine gets twice).")
    args = parser.parse_args()
    if os.environ.get(INSIDE):
        inside(args)
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root: Ray runs inside a private network namespace (unshare --net)")
    command = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--", sys.executable, *sys.argv]
    raise SystemExit(subprocess.run(command, env={**os.environ, INSIDE: "1"}).returncode)


if __name__ == "__main__":
    main()
