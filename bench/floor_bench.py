"""Seconds to code the 120 ACI-BENCH test notes with the floor (`--model none`), start-up
included: one `cli.py predict --input aci:test` process, timed from outside.

    python bench/floor_bench.py --db KB.duckdb [--threads N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "preds.jsonl"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "cli.py", "predict", "--input", "aci:test", "--output", str(output), "--model", "none",
             "--threads", str(args.threads), "--db", args.db, "--json"],
            cwd=ROOT, check=True, capture_output=True,
        )
        seconds = time.perf_counter() - start
        notes = sum(1 for line in output.read_text(encoding="utf-8").splitlines() if line.strip())
    print(json.dumps({"notes": notes, "seconds": round(seconds, 1), "threads": args.threads}))


if __name__ == "__main__":
    main()
