"""Run hand-written and compiled programs on the same notes and compare them.

Scores come from optimizers.evaluate (the same code as `cli.py evaluate`); each compiled
program is compared with the hand-written program it was compiled from by a paired bootstrap
of micro F1 (compiled minus hand-written), and every program with the floor (the run labelled
FLOOR: MedCoder with no model) the same way. Cost is measured per system: LM calls, tokens,
LM answers that failed to parse (counted even when an adapter retry recovered), seconds per note.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from data.checks import CodeChecker
from data.records import NoteRecord
from icd_graph.errors import IcdError
from optimizers.evaluate import Evaluation, Prediction, evaluate, parse_prediction
from optimizers.metrics import Difference, paired_bootstrap


FLOOR = "floor (--model none)"


class PlotUnavailable(IcdError):
    """--plot without matplotlib installed."""


class NoteMeter(BaseCallback):
    """LM calls and unparseable LM answers of one note."""

    def __init__(self):
        self.calls = 0
        self.parse_failures = 0
        self._lock = threading.Lock()

    def on_lm_start(self, call_id, instance, inputs):
        with self._lock:
            self.calls += 1

    def on_adapter_parse_end(self, call_id, outputs, exception=None):
        if exception is not None:
            with self._lock:
                self.parse_failures += 1


@dataclass(frozen=True)
class NoteRun:
    id: str
    line: dict[str, Any] | None
    error: str | None
    calls: int
    parse_failures: int
    seconds: float


@dataclass(frozen=True)
class SystemRun:
    """One system (a program, hand-written or compiled) run over the notes."""

    label: str
    program: str
    compiled: str | None
    notes: tuple[NoteRun, ...]

    @property
    def lines(self) -> list[dict[str, Any]]:
        """The predictions in `predict --output` format ({"id", "codes", "result"})."""
        return [note.line for note in self.notes if note.line is not None]

    def predictions(self) -> tuple[Prediction, ...]:
        check = CodeChecker()
        return tuple(parse_prediction(line, f"{self.label}:{line['id']}", check) for line in self.lines)

    @property
    def lm_calls(self) -> int:
        return sum(n.calls for n in self.notes)

    @property
    def parse_failures(self) -> int:
        return sum(n.parse_failures for n in self.notes)

    def tokens(self, kind: str) -> int:
        return sum(
            int(counts.get(kind) or 0)
            for line in self.lines
            for counts in (line["result"].get("usage") or {}).values()
        )

    @property
    def seconds_per_note(self) -> float:
        return sum(n.seconds for n in self.notes) / len(self.notes) if self.notes else 0.0

    @property
    def failed(self) -> list[tuple[str, str]]:
        return [(n.id, n.error) for n in self.notes if n.error is not None]


def run_system(
    label: str,
    program: dspy.Module,
    records: Sequence[NoteRecord],
    lm: dspy.BaseLM | None,
    *,
    program_name: str,
    compiled: str | None = None,
    threads: int = 1,
    on_note: Callable[[str], None] | None = None,
) -> SystemRun:
    """Codes every record; a note the program cannot code is kept as an empty prediction with
    its error (LM failures from programs.batch.code_note stop the run)."""
    from programs.batch import code_note
    from programs.errors import NoteError

    def one(record: NoteRecord) -> NoteRun:
        meter = NoteMeter()
        start = time.perf_counter()
        with dspy.context(callbacks=[*dspy.settings.callbacks, meter]):
            try:
                result = code_note(program, record.text, lm)
            except NoteError as exc:
                line, error = None, str(exc)
            else:
                line, error = {"id": record.id, "codes": result.code_list, "result": result.to_dict()}, None
        run = NoteRun(record.id, line, error, meter.calls, meter.parse_failures, time.perf_counter() - start)
        if on_note:
            on_note(record.id)
        return run

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        notes = tuple(pool.map(one, records))
    return SystemRun(label, program_name, compiled, notes)


@dataclass(frozen=True)
class Row:
    run: SystemRun
    evaluation: Evaluation
    baseline: str | None = None
    difference: Difference | None = None
    floor: Difference | None = None

    def as_dict(self) -> dict[str, Any]:
        scores = self.evaluation.scores
        run = self.run
        return {
            "system": run.label,
            "program": run.program,
            "compiled": run.compiled,
            "notes": len(scores.notes),
            "micro": _prf(scores.micro),
            "macro": _prf(scores.macro),
            "category_micro": _prf(scores.category_micro),
            "exact_match": scores.exact_match,
            "difference": _difference(self.difference, self.baseline),
            "vs_floor": _difference(self.floor, FLOOR),
            "lm_calls": run.lm_calls,
            "prompt_tokens": run.tokens("prompt_tokens"),
            "completion_tokens": run.tokens("completion_tokens"),
            "parse_failures": run.parse_failures,
            "seconds_per_note": run.seconds_per_note,
            "failed_notes": [{"id": i, "error": e} for i, e in run.failed],
        }


@dataclass(frozen=True)
class Comparison:
    dataset: str
    rows: tuple[Row, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "systems": [row.as_dict() for row in self.rows]}


def compare(records: Sequence[NoteRecord], runs: Sequence[SystemRun], *, dataset: str = "", resamples: int = 1000, seed: int = 0) -> Comparison:
    """Scores every run; a compiled run gets the paired-bootstrap CI of its micro-F1 gain over
    the hand-written run of the same program (when that run is among `runs`), and every run the
    CI of its gain over the FLOOR run (when there is one)."""
    evaluations = {run.label: evaluate(records, run.predictions(), dataset=dataset) for run in runs}
    hand_written = {run.program: run for run in runs if run.compiled is None and run.label != FLOOR}
    notes = {label: evaluation.scores.notes for label, evaluation in evaluations.items()}

    def gain(base: SystemRun | None, run: SystemRun) -> Difference | None:
        if base is None or base is run:
            return None
        return paired_bootstrap(notes[base.label], notes[run.label], resamples=resamples, seed=seed)

    floor = next((run for run in runs if run.label == FLOOR), None)
    rows = []
    for run in runs:
        base = hand_written.get(run.program) if run.compiled is not None else None
        rows.append(Row(run, evaluations[run.label], base.label if base else None, gain(base, run), gain(floor, run)))
    return Comparison(dataset, tuple(rows))


def pyplot():
    """matplotlib's pyplot on the Agg backend; PlotUnavailable when matplotlib is not installed
    (called before a compare run too, so that --plot fails before the work)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install -e '.[plot]' (or pip install matplotlib)") from None
    return plt


def plot(comparison: Comparison, path) -> None:
    """A bar chart of micro F1 per system with the compiled systems' 95% CI as error bars."""
    plt = pyplot()
    labels = [row.run.label for row in comparison.rows]
    values = [row.evaluation.scores.micro.f1 for row in comparison.rows]
    errors = [
        [row.difference.delta - row.difference.low if row.difference else 0.0 for row in comparison.rows],
        [row.difference.high - row.difference.delta if row.difference else 0.0 for row in comparison.rows],
    ]
    figure, axis = plt.subplots(figsize=(max(4, 1.6 * len(labels)), 4))
    axis.bar(range(len(labels)), values, yerr=errors, capsize=6, color=["#999" if not r.run.compiled else "#3a7" for r in comparison.rows])
    axis.set_xticks(range(len(labels)), labels, rotation=20, ha="right")
    axis.set_ylabel("micro F1 (error bars: 95% CI of the gain)")
    axis.set_ylim(0, 1)
    axis.set_title(comparison.dataset)
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _difference(difference: Difference | None, baseline: str | None) -> dict[str, Any] | None:
    if difference is None:
        return None
    return {
        "baseline": baseline,
        "delta_micro_f1": difference.delta,
        "ci_low": difference.low,
        "ci_high": difference.high,
        "confidence": difference.confidence,
        "resamples": difference.resamples,
        "significant": difference.significant,
    }


def _prf(value) -> dict[str, float]:
    return {"precision": value.precision, "recall": value.recall, "f1": value.f1}
