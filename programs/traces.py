"""Program runs recorded as tool-calling chat data: per note, the messages of every LM stage in
order (as DSPy's adapter formatted them, with the answer the LM gave), each knowledge-base call
the program made as an assistant tool call with its result, then the program's final codes
with their evidence, beside the gold codes and the note's code F1.

LM calls are read with a DSPy callback; knowledge-base calls through an
`icd_graph.tools.RecordingKnowledgeBase` put in place of the program's own (and of any program
inside it), so any program is recorded without changing it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from data.chat import LMCall, chat_record
from data.records import NoteRecord
from icd_graph.tools import RecordingKnowledgeBase
from optimizers.metrics import code_f1
from programs.base import CodingProgram
from programs.batch import code_note
from programs.concurrency import Feed
from programs.errors import NoteError
from programs.lm import spent
from programs.predictions import BatchSummary, finished_ids

PROGRAM_SYSTEM = (
    "You are the {program} ICD-10-CM coding program (stages: {stages}). Each stage gives its instructions and "
    "inputs in a user turn; answer in the format it asks. Knowledge-base look-ups are tool calls. The last turn is "
    'the program\'s answer as JSON: {{"codes": [{{"code", "description", "evidence": [{{"start", "end", "text"}}]}}]}}, '
    "offsets being character offsets into the note."
)


class StageRecorder(BaseCallback):
    """Appends an `LMCall` to `events` for every LM call, named by the predictor that made it."""

    def __init__(self, events: list, names: dict[int, str]):
        self.events = events
        self.names = names
        self.stack: list[str] = []
        self.opened: set[str] = set()
        self.pending: dict[str, tuple[str, list[dict]]] = {}

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        name = self.names.get(id(instance))
        if name is not None:
            self.stack.append(name)
            self.opened.add(call_id)

    def on_module_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        if call_id in self.opened:
            self.opened.discard(call_id)
            self.stack.pop()

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        messages = inputs.get("messages") or [{"role": "user", "content": inputs.get("prompt") or ""}]
        self.pending[call_id] = (self.stack[-1] if self.stack else "lm", [dict(m) for m in messages])

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        stage, messages = self.pending.pop(call_id, ("", []))
        if exception is not None or not outputs:
            return
        first = outputs[0]
        text = first.get("text") if isinstance(first, dict) else first
        self.events.append(LMCall(stage, tuple(messages), text or ""))


@contextmanager
def recorded(program: CodingProgram) -> Iterator[RecordingKnowledgeBase]:
    """The program (and every coding program inside it, such as Verify's first pass) querying a
    recording wrapper of its knowledge base; the base is put back afterwards."""
    programs = [program, *(module for _, module in program.named_sub_modules() if isinstance(module, CodingProgram))]
    programs = list({id(p): p for p in programs}.values())
    saved = [p.kb for p in programs]
    wrapper = RecordingKnowledgeBase(saved[0])
    for p in programs:
        p.kb = wrapper
    try:
        yield wrapper
    finally:
        for p, kb in zip(programs, saved):
            p.kb = kb


def stage_names(program: CodingProgram) -> dict[int, str]:
    return {id(predictor): name for name, predictor in program.named_predictors()}


def trace_note(program: CodingProgram, kb: RecordingKnowledgeBase, record: NoteRecord, lm, meta: dict[str, Any]) -> dict[str, Any]:
    """One note through `program` (whose knowledge base is `kb`, see `recorded`) as a chat
    record (`data.chat.chat_record`)."""
    events: list = []
    with kb.recording(events), dspy.context(callbacks=[StageRecorder(events, stage_names(program))]):
        result = code_note(program, record.text, lm)
    codes = [
        {"code": item.code, "description": item.description,
         "evidence": [{"start": e.span.start, "end": e.span.end, "text": e.span.text} for e in item.evidence if e.span]}
        for item in result.codes
    ]
    stages = ", ".join(event.stage for event in events if isinstance(event, LMCall))
    names = ", ".join(dict.fromkeys(name for name, _ in program.named_predictors())) or "none"
    system = PROGRAM_SYSTEM.format(program=program.name, stages=names)
    f1 = code_f1(record.codes, result.code_list)
    return chat_record(record.id, system, f"Code this clinical note.\n\n{record.text}", events, codes, list(record.codes), f1,
                       {**meta, "stages": stages}) | {"usage": result.usage}


@dataclass
class TraceSummary(BatchSummary):
    """A batch summary plus the notes rejected by the F1 threshold and the F1 of those written."""

    rejected: list[tuple[str, float]] = field(default_factory=list)
    f1: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"output": str(self.output), "written": self.written, "skipped": self.skipped,
                "rejected": [{"id": i, "f1": f} for i, f in self.rejected],
                "failed": [{"id": i, "error": e} for i, e in self.failed],
                "mean_f1": sum(self.f1) / len(self.f1) if self.f1 else None, "usage": self.usage, "cost": self.cost}


def write_traces(
    program: CodingProgram,
    records: Sequence[NoteRecord],
    output: Path,
    lm,
    meta: dict[str, Any],
    *,
    threads: int = 1,
    min_f1: float | None = None,
    on_note: Callable[[str], None] | None = None,
) -> TraceSummary:
    """Records every note not already in `output` and appends its chat record, unless its F1
    is below `min_f1` (rejection sampling: such notes are counted, not written, and tried
    again by a rerun). Notes that cannot be coded are reported in `failed`; an LM failure stops
    the run with what is done kept."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    done = finished_ids(output)
    summary = TraceSummary(output)
    todo = [record for record in records if record.id not in done]
    summary.skipped = len(records) - len(todo)
    before = spent(lm)  # 0 with lm None: `--model none`, the rules alone
    with recorded(program) as kb, output.open("a", encoding="utf-8") as sink, \
            ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for record, future in Feed(pool, lambda record: trace_note(program, kb, record, lm, meta), todo, 2 * max(1, threads)):
            try:
                line = future.result()
            except NoteError as exc:
                summary.failed.append((record.id, str(exc)))
            else:
                summary.add_usage(line.pop("usage"))
                if min_f1 is not None and line["f1"] < min_f1:
                    summary.rejected.append((record.id, line["f1"]))
                else:
                    sink.write(json.dumps(line, ensure_ascii=False) + "\n")
                    sink.flush()
                    os.fsync(sink.fileno())
                    summary.written += 1
                    summary.f1.append(line["f1"])
            if on_note:
                on_note(record.id)
    summary.cost = spent(lm) - before
    return summary
