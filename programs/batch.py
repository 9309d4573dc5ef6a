"""Code one note or many with a program in this process: concurrent notes within one thread
budget (`programs.concurrency`), the resumable predictions file of `programs.predictions`, LM
usage and cost totals. Shared by `predict`, `evaluate` and `compare`; the Ray engine
(`programs.ray_engine`) and the coding service (`service.app`) code notes with `code_record`."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import dspy
from dspy.utils.exceptions import LMError

from data.records import NoteRecord
from programs.base import CodingProgram
from programs.concurrency import Budget
from programs.errors import ModelError, NoteError
from programs.lm import model_error, spent
from programs.predictions import BatchSummary, Outcome, code_batch, to_code
from programs.result import CodingResult


def code_note(program: CodingProgram, note: str, lm: dspy.LM | None, budget: Budget | None = None) -> CodingResult:
    """One note through `program` with `lm` (None: its rules alone), its independent stage calls
    run within `budget` (None: one after the other); LM failures become a one-line ModelError."""
    try:
        with dspy.context(lm=lm), budget.note() if budget else nullcontext():
            return program(note=note).result
    except LMError as exc:
        raise model_error(exc, lm) from None


def code_record(program: CodingProgram, record_id: str, text: str, lm: dspy.LM | None, budget: Budget | None = None) -> Outcome:
    """`code_note` as an Outcome: only the note's own errors and the model's failure are caught."""
    try:
        result = code_note(program, text, lm, budget)
    except NoteError as exc:
        return Outcome(record_id, failed=str(exc))
    except ModelError as exc:
        return Outcome(record_id, stopped=str(exc))
    line = {"id": record_id, "codes": result.code_list, "result": result.to_dict()}
    return Outcome(record_id, json.dumps(line, ensure_ascii=False), result.usage)


def run_batch(
    program: CodingProgram,
    records: Sequence[NoteRecord],
    output: Path,
    lm: dspy.LM | None,
    *,
    threads: int = 1,
    on_note: Callable[[str], None] | None = None,
) -> BatchSummary:
    """Codes every record not already in `output`, appending {"id", "codes", "result"} lines as
    notes finish; at most `threads` threads at work at once, coding notes or the independent
    stage calls of a note. Notes that cannot be coded (empty, binary) are reported in `failed`
    and left out, so a rerun tries them again. A model that keeps failing stops the run: notes
    being coded at that moment are still saved, the others are not started, and the ModelError
    says how many notes the output holds and that a rerun resumes."""
    output = Path(output)
    todo, summary = to_code(records, output)
    budget = Budget(threads)
    before = spent(lm)
    try:
        code_batch(todo, summary, lambda record: code_record(program, record.id, record.text, lm, budget),
                   threads=budget.threads, ahead=2 * budget.threads, on_note=on_note)
    finally:
        budget.close()
    summary.cost = spent(lm) - before
    return summary.finish(len(records))
