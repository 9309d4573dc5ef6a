"""Textual feedback for GEPA: which codes were missed or wrong and why, read from the program's
per-stage trace (`result.trace`, a list of programs.result.StageTrace)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from optimizers.metrics import category


def code_feedback(gold: Iterable[str], predicted: Iterable[str], trace: Sequence[Any] = ()) -> str:
    """One line per error, e.g. 'missed E11.319 (category E11 right, wrong subcode: predicted E11.9)'
    and 'predicted I10 not in gold', each followed by what the stages did with that code."""
    gold_set, predicted_set = set(gold), set(predicted)
    missed = sorted(gold_set - predicted_set)
    wrong = sorted(predicted_set - gold_set)
    lines = []
    for code in missed:
        siblings = sorted(p for p in wrong if category(p) == category(code))
        if siblings:
            why = f"category {category(code)} right, wrong subcode: predicted {', '.join(siblings)}"
        else:
            why = f"category {category(code)} not predicted"
        lines.append(f"missed {code} ({why}){_stage_story(code, trace)}")
    for code in wrong:
        lines.append(f"predicted {code} not in gold{_stage_story(code, trace)}")
    right = sorted(gold_set & predicted_set)
    if right:
        lines.append(f"correct: {', '.join(right)}")
    if not lines:
        return "correct: no codes expected and none predicted"
    if not missed and not wrong:
        return "all codes correct: " + ", ".join(right)
    return "\n".join(lines)


def _stage_story(code: str, trace: Sequence[Any]) -> str:
    """What each stage did with `code`: proposed, kept or dropped with the stage's reason."""
    events = []
    for stage in trace:
        dropped = [d for d in getattr(stage, "dropped", ()) if code in str(d.item)]
        if dropped:
            events.append(f"dropped by {stage.stage}: {dropped[0].reason}")
        elif any(code in str(item) for item in getattr(stage, "kept", ())):
            events.append(f"kept by {stage.stage}")
        elif any(code in str(item) for item in getattr(stage, "proposed", ())):
            events.append(f"proposed by {stage.stage}")
    if not events:
        return "; no stage proposed it" if trace else ""
    return "; " + "; ".join(events)
