"""A batch of 500 notes against a server failing 20% of calls, killed with SIGKILL mid-run and
rerun: every note ends up in the output exactly once, each line valid JSON, with the codes of a
fault-free run; no note text on stderr. The figures printed here are the README's."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

from data.records import NoteRecord
from programs.batch import run_batch
from programs.lm import make_lm
from tests.faults.conftest import REPO, SCRIPT, SECRET, note_text, write_notes
from tests.faults.fault_server import FaultServer, Plan
from tests.faults.interrupts import interrupt_batch, lines_in
from tests.programs.scripted_server import ScriptedServer

NOTES = 500
KILL_AFTER = 150
RERUNS = 6
INTERRUPTED_NOTES = 5000
INTERRUPTS = 8


def fault_free_codes(medcoder, tmp_path) -> dict[str, list[str]]:
    records = [NoteRecord(f"n{n:03d}", note_text(n), ()) for n in range(NOTES)]
    with FaultServer(script=SCRIPT) as server:
        lm = make_lm("scripted", server.url, num_retries=0, cache=False)
        run_batch(medcoder, records, tmp_path / "fault-free.jsonl", lm, threads=8)
    return {row["id"]: row["codes"] for row in map(json.loads, (tmp_path / "fault-free.jsonl").read_text().splitlines())}


def test_500_notes_20_percent_failing_calls_sigkill_and_rerun(kb_path, medcoder, isolated_cache, tmp_path):
    expected = fault_free_codes(medcoder, tmp_path)
    notes, out = tmp_path / "notes.jsonl", tmp_path / "preds.jsonl"
    ids = write_notes(notes, NOTES)
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache")}
    stderr = []
    with FaultServer(Plan(rate=0.2, seed=12), SCRIPT, retry_after=1) as server:
        command = [sys.executable, "cli.py", "predict", "--input", str(notes), "--output", str(out), "--program", "medcoder",
                   "--model", "scripted", "--api-base", server.url, "--timeout", "1", "--retries", "3",
                   "--threads", "16", "--db", str(kb_path), "--json"]
        started = time.monotonic()
        killed = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        while lines_in(out) < KILL_AFTER and killed.poll() is None and time.monotonic() - started < 240:
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        stderr.append(killed.communicate()[1].decode())
        assert killed.returncode == -signal.SIGKILL, "killed mid-run, before the batch finished"
        at_kill = lines_in(out)
        runs = 1
        for runs in range(2, RERUNS + 2):
            done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
            stderr.append(done.stderr)
            if done.returncode == 0:
                break
            assert done.returncode == 1, done.stderr
            assert f"rerun with --output {out} to resume" in done.stderr.strip().splitlines()[-1]
        seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == ids, "every note exactly once"
    assert {row["id"]: row["codes"] for row in rows} == expected
    tally = server.tally
    assert tally.injected >= 0.15 * tally.requests
    assert not any(SECRET in text for text in stderr) and not any("Traceback" in text for text in stderr)
    print(f"\n{NOTES} notes, {tally.requests} requests, {tally.injected} failures injected "
          f"({', '.join(f'{kind} {count}' for kind, count in sorted(tally.faults.items()))}), "
          f"{tally.retries} retries, killed at {at_kill} saved notes, {runs} runs, 0 notes lost, {seconds:.1f} s")


def test_ctrl_c_mid_batch_exits_130_and_leaves_no_process(kb_path, tmp_path):
    """Ctrl-C reaches the terminal's whole process group: the command and its read-ahead
    process (programs.read_ahead), here still extracting the batch (5,000 notes, about 10 s of
    extraction). The command says so in one line and exits 130, the process ends with it, and
    every line written is a whole note."""
    notes, out = tmp_path / "notes.jsonl", tmp_path / "preds.jsonl"
    ids = write_notes(notes, INTERRUPTED_NOTES)
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache")}
    with ScriptedServer(SCRIPT, delay=0.2) as server:
        command = [sys.executable, "cli.py", "predict", "--input", str(notes), "--output", str(out), "--program", "medcoder",
                   "--model", "scripted", "--api-base", server.url, "--threads", "2", "--db", str(kb_path), "--json"]
        running = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
        started = time.monotonic()
        while lines_in(out) < 3 and running.poll() is None and time.monotonic() - started < 120:
            time.sleep(0.05)
        os.killpg(running.pid, signal.SIGINT)
        stderr = running.communicate(timeout=120)[1].decode()
    assert running.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in stderr, stderr
    for _ in range(100):
        try:
            os.killpg(running.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("a process of the interrupted command is still running")
    written = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert 3 <= len(written) < INTERRUPTED_NOTES and len(set(written)) == len(written) and set(written) <= set(ids)


def test_ctrl_c_at_any_moment_of_a_batch_ends_the_command(kb_path, tmp_path):
    """Ctrl-C lands wherever the command's main thread is. Here it lands at eight moments of a
    batch coded by the rules alone (`--model none`: hundreds of notes a second, the main thread
    busy handing notes out and taking them back). Each time the command exits 130 within
    seconds, and every line written is a whole note. Waiting for the notes with
    `concurrent.futures.wait` hung about one such interrupt in four, and a KeyboardInterrupt
    raised inside a future's lock rarely (see `programs.concurrency.Feed`)."""
    notes = tmp_path / "notes.jsonl"
    write_notes(notes, INTERRUPTED_NOTES)
    moments = random.Random(7)
    for run in range(INTERRUPTS):
        verdict = interrupt_batch(kb_path, notes, tmp_path / f"preds-{run}.jsonl", moments.uniform(0, 1.5))
        assert verdict == "ok", f"interrupt {run + 1} of {INTERRUPTS}: {verdict}"
