"""Ctrl-C at random moments of a batch: `cli.py predict --input` on synthetic notes coded by the
rules alone (`--model none`, hundreds of notes a second, the main thread busy handing notes out
and writing them), SIGINT to its process group once 3 lines are written plus a random pause.
Each interrupt must end the command with status 130 and "interrupted" as the last line of
stderr within `--wait` seconds, every line written a whole note, each once; a command that does
not end has its threads' stacks printed (SIGUSR1) before it is killed.

    python bench/interrupt_bench.py --db KB.duckdb [--interrupts 80] [--notes 5000] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.faults.conftest import write_notes  # noqa: E402
from tests.faults.interrupts import interrupt_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--interrupts", type=int, default=80)
    parser.add_argument("--notes", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--wait", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    # A job started in the background by a shell ignores SIGINT, and so would the commands it starts.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    moments = random.Random(args.seed)
    failures = 0
    with tempfile.TemporaryDirectory() as folder:
        notes = Path(folder) / "notes.jsonl"
        write_notes(notes, args.notes)
        for run in range(args.interrupts):
            verdict = interrupt_batch(args.db, notes, Path(folder) / f"preds-{run}.jsonl", moments.uniform(0, 1.5),
                                      threads=args.threads, wait=args.wait)
            if verdict != "ok":
                failures += 1
                print(f"interrupt {run + 1}: {verdict}", flush=True)
    print(json.dumps({"interrupts": args.interrupts, "failed": failures, "notes": args.notes, "threads": args.threads}))


if __name__ == "__main__":
    main()
