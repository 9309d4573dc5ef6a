"""The Ray engine of a batch (`--engine ray`): a Ray Data pipeline over the notes whose actors
each hold the knowledge base and the program once and code notes within a thread budget of
their own, as the threads engine does in one process; the driver only reads and writes.

Nothing travels by path: the knowledge base goes to the workers through the object store (its
files' bytes, written to each node's temp dir once per content), the program as its name and
DSPy state, the model as its settings, and this package's code in the job's runtime environment,
so workers on other nodes need only the dependencies installed. The predictions file is the
threads engine's: one line per note written on the driver as notes finish, in input order, a
rerun skipping the ids already there; a failing model stops the run keeping the notes in flight,
and a note that cannot be coded is listed, as with threads."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data.records import NoteRecord
from icd_graph.errors import IcdError
from programs.base import CodingProgram
from programs.errors import BatchError
from programs.lm import ModelSpec
from programs.predictions import Appender, BatchSummary, Outcome, to_code

INSTALL = "pip install -e '.[ray]'"
PACKAGES = ("icd_graph", "programs", "signatures", "data")
"""This package's code the workers import, shipped with the job (the dependencies are not)."""
QUIET = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DATA_LOG_LEVEL": "ERROR"}
"""No usage reports, and Ray Data's logs to its log file only (see also `ray_messages_to`)."""
CALLS_PER_WORKER = 2
"""Blocks of notes a worker holds at once: its threads start the next block's notes while the
last notes of the other finish."""
NOT_STARTED = "not started"
"""A note a worker did not start, the model having failed on another one."""
MAX_BLOCKS = 10_000
"""Blocks of notes at most (a block holds `--threads` notes, more in a bigger batch)."""


@dataclass(frozen=True)
class Cluster:
    """Where the actors run: `address` of a running cluster (`ray start --head`), or None for a
    local cluster started in this process; `workers` actors (None: one per CPU of the cluster),
    each coding with `threads` threads."""

    address: str | None = None
    workers: int | None = None
    threads: int = 1


def require_ray(cluster: Cluster | None = None):
    """The `ray` module, with Ray Data, imported after the environment Ray reads at import is
    set (`QUIET`, and for a local cluster a token of its own, see `private_token`); a BatchError
    naming the install command without it."""
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    if cluster is not None and cluster.address is None:
        private_token()
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise BatchError(f"--engine ray needs Ray, which is not installed: {INSTALL}") from None
    return ray


class StopSignal:
    """A Ray actor every worker asks before starting a note: set once a worker's model fails."""

    def __init__(self):
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set


class NoteCoder:
    """A Ray Data actor: the knowledge base, the program and the model made once, then batches
    of notes coded on `threads` threads within one budget; one row per note."""

    def __init__(self, kb: list, program: tuple[str, dict[str, Any]], model: ModelSpec, threads: int, stop: list):
        import ray

        from icd_graph.bundle import unpack
        from icd_graph.kb import KnowledgeBase
        from programs.concurrency import Budget
        from programs.registry import build_program

        self.kb = KnowledgeBase(unpack(ray.get(kb[0])))
        name, state = program
        self.program = build_program(name, self.kb)
        self.program.load_state(state)
        for thread in self.program.preload(batch=True):
            thread.join()
        self.lm = model.make()
        self.budget = Budget(threads)
        self.pool = ThreadPoolExecutor(max_workers=self.budget.threads, thread_name_prefix="icd-note")
        self.stop = stop[0]
        self._stopped = threading.Event()
        self._cost = threading.Lock()
        self._counted = 0.0

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        outcomes = list(self.pool.map(self.code, list(batch["id"]), list(batch["text"])))
        return {
            "id": [o.id for o in outcomes],
            "status": [status(o) for o in outcomes],
            "line": [o.line for o in outcomes],
            "message": [o.failed or o.stopped for o in outcomes],
            "usage": [json.dumps(o.usage) for o in outcomes],
            "cost": [self.new_cost() for _ in outcomes],
        }

    def code(self, note_id: str, text: str) -> Outcome:
        """The note coded, or not started (an Outcome with neither line nor error) once a model failed."""
        import ray

        from programs.batch import code_record

        if self._stopped.is_set() or ray.get(self.stop.is_set.remote()):
            self._stopped.set()
            return Outcome(str(note_id))
        outcome = code_record(self.program, str(note_id), str(text), self.lm, self.budget)
        if outcome.stopped:
            self._stopped.set()
            ray.get(self.stop.set.remote())
        return outcome

    def new_cost(self) -> float:
        """The model's cost since the last call (so the rows' costs add up to the actor's)."""
        from programs.lm import spent

        with self._cost:
            total = spent(self.lm)
            new, self._counted = total - self._counted, total
            return new


def status(outcome: Outcome) -> str:
    if outcome.stopped:
        return "stopped"
    if outcome.failed:
        return "failed"
    return "coded" if outcome.line else NOT_STARTED


def outcome_of(row: dict[str, Any]) -> Outcome | None:
    """The Outcome a result row of `NoteCoder` stands for; None for a note not started."""
    kind, message = row["status"], row["message"] or ""
    if kind == NOT_STARTED:
        return None
    return Outcome(
        row["id"], row["line"] or "", json.loads(row["usage"] or "{}"),
        failed=message if kind == "failed" else "", stopped=message if kind == "stopped" else "",
    )


def run_ray_batch(
    program: CodingProgram,
    records: Sequence[NoteRecord],
    output: Path,
    model: ModelSpec,
    cluster: Cluster,
    *,
    on_note: Callable[[str], None] | None = None,
) -> BatchSummary:
    """`programs.batch.run_batch` on a Ray cluster: the records not already in `output` coded by
    `cluster.workers` actors, the lines appended in input order as they come back."""
    output = Path(output)
    todo, summary = to_code(records, output)
    if not todo:
        return summary.finish(len(records))
    ray = require_ray(cluster)
    handle, name = tempfile.mkstemp(prefix="icd-coder-ray-", suffix=".log")
    os.close(handle)
    log = Path(name)
    with ray_messages_to(log), connected(ray, cluster, log) as workers:
        rows = pipeline(ray, program, todo, model, workers, cluster.threads)
        with Appender(output) as sink:
            try:
                for row in rows:
                    summary.cost += row["cost"]
                    outcome = outcome_of(row)
                    if outcome is None:
                        continue
                    summary.record(outcome, sink)
                    if on_note and not outcome.stopped:
                        on_note(outcome.id)
            except ray.exceptions.RayError as exc:
                raise ray_failure(exc, summary, len(records), log) from None
    log.unlink(missing_ok=True)
    return summary.finish(len(records))


@contextmanager
def ray_messages_to(log: Path) -> Iterator[None]:
    """Ray's processes write their messages to file descriptor 2, the command's stderr: during
    the run they go to `log` instead, while the command's own stderr (progress, its one-line
    errors) stays where it was."""
    sys.stderr.flush()
    terminal = os.dup(2)
    with log.open("ab") as sink:
        os.dup2(sink.fileno(), 2)
    own = os.fdopen(os.dup(terminal), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    previous, sys.stderr = sys.stderr, own
    try:
        yield
    finally:
        sys.stderr = previous
        own.close()
        os.dup2(terminal, 2)
        os.close(terminal)


def pipeline(ray, program: CodingProgram, todo: list[NoteRecord], model: ModelSpec, workers: int, threads: int) -> Iterator[dict]:
    """The result rows of the notes `todo`, in their order, coded by `workers` NoteCoder actors,
    a block of notes (a batch of the actor) at a time."""
    from icd_graph.bundle import pack

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True
    block = max(threads, -(-len(todo) // MAX_BLOCKS))
    kb = ray.put(pack(program.kb.path))
    stop = ray.remote(num_cpus=0)(StopSignal).remote()
    notes = ray.data.from_items([{"id": r.id, "text": r.text} for r in todo], override_num_blocks=-(-len(todo) // block))
    coded = notes.map_batches(
        NoteCoder,
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(
            size=workers, max_tasks_in_flight_per_actor=CALLS_PER_WORKER,
            max_concurrent_calls_per_actor=CALLS_PER_WORKER, enable_true_multi_threading=True,
        ),
        fn_constructor_kwargs={"kb": [kb], "program": (program.name, program.dump_state()), "model": model,
                               "threads": threads, "stop": [stop]},
    )
    return coded.iter_rows()


@contextmanager
def connected(ray, cluster: Cluster, log: Path) -> Iterator[int]:
    """Ray initialised for this run (the cluster at `cluster.address`, or a local one), this
    package's code in the job's runtime environment; yields the number of workers to start."""
    import importlib

    runtime_env = {
        "py_modules": [importlib.import_module(name) for name in PACKAGES],
        "excludes": ["__pycache__", "*.pyc"],
        "env_vars": {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **QUIET},
    }
    options = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR, "runtime_env": runtime_env}
    try:
        if cluster.address is None:
            ray.init(address="local", num_cpus=max(os.cpu_count() or 1, cluster.workers or 1), **options)
        else:
            ray.init(address=cluster.address, **options)
    except Exception as exc:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError, AuthenticationError
        raise BatchError(connection_failure(cluster.address, exc, log)) from None
    try:
        workers = cluster.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        yield workers
    finally:
        ray.shutdown()


def private_token() -> None:
    """Token authentication for a local cluster with a token made for this run and kept in this
    process's environment (Ray's default writes one to ~/.ray/auth_token), unless the user
    chose a mode or a token."""
    if not any(os.environ.get(key) for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")):
        os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))


def connection_failure(address: str | None, exc: Exception, log: Path) -> str:
    """One line on why Ray could not start or be reached, and what to check."""
    said = " ".join(str(exc).split())[:300] or exc.__class__.__name__
    if address is None:
        return f"cannot start a local Ray cluster: {said} (Ray's messages: {log})"
    messages = log.read_text(errors="replace") if log.exists() else ""
    if "InvalidAuthToken" in messages or "Unauthenticated" in messages or "uthentication" in said:
        return (f"the Ray cluster at {address} refused this command's token (or it has none): set RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the head node's token, as for `ray start --address`")
    return f"cannot connect to the Ray cluster at {address}: {said}; check --ray-address and that the cluster is running (Ray's messages: {log})"


def ray_failure(exc: Exception, summary: BatchSummary, total: int, log: Path) -> BatchError:
    """The error that stopped a Ray run, saying what is saved: the message of a knowledge-base,
    program or model error raised in a worker, else the first line of Ray's."""
    cause = exc
    while cause is not None and not isinstance(cause, IcdError):
        cause = getattr(cause, "cause", None) or cause.__cause__
    saved = summary.skipped + summary.written
    where = f"{saved} of {total} notes are saved in {summary.output}: rerun with --output {summary.output} to resume"
    if isinstance(cause, IcdError):
        return BatchError(f"{cause}; {where}")
    first = next((line for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
    return BatchError(f"the Ray run failed ({first.strip()[:300]}; Ray's messages: {log}); {where}")
