"""Ctrl-C at one moment of a batch coded by the rules alone, shared by the fault tests and
`bench/interrupt_bench.py`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.faults.conftest import REPO


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def interrupt_batch(kb: Path | str, notes: Path, output: Path, pause: float, *, threads: int = 2, wait: float = 30.0) -> str:
    """`cli.py predict --input notes --model none` sent SIGINT (to its process group) `pause`
    seconds after its third line: 'ok' when it exits 130 within `wait` seconds with
    "interrupted" as the last line of stderr, its lines whole and each note once (3 or more);
    else what went wrong. A command that does not end is described by its processes and its
    threads' stacks (SIGUSR1), then killed."""
    command = [sys.executable, "cli.py", "predict", "--input", str(notes), "--output", str(output), "--model", "none",
               "--threads", str(threads), "--db", str(kb), "--json"]
    running = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    started = time.monotonic()
    while lines_in(output) < 3 and running.poll() is None and time.monotonic() - started < 120:
        time.sleep(0.02)
    time.sleep(pause)
    os.killpg(running.pid, signal.SIGINT)
    try:
        stderr = running.communicate(timeout=wait)[1].decode()
    except subprocess.TimeoutExpired:
        alive = subprocess.run(["ps", "-o", "pid,ppid,stat,args", "-g", str(running.pid)], capture_output=True, text=True).stdout
        running.send_signal(signal.SIGUSR1)  # its threads' stacks, on stderr
        time.sleep(1)
        os.killpg(running.pid, signal.SIGKILL)
        stderr = running.communicate()[1].decode()
        return f"the command did not end; its processes then:\n{alive}its stderr: {stderr[-6000:]}"
    lines = stderr.strip().splitlines()
    if running.returncode != 130 or not lines or lines[-1] != "interrupted":
        return f"status {running.returncode}, stderr: {stderr[-2000:]}"
    written = [json.loads(line)["id"] for line in output.read_text().splitlines()]
    if not len(set(written)) == len(written) >= 3:
        return f"{len(written)} lines written, {len(set(written))} notes"
    return "ok"
