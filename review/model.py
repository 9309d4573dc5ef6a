"""One note under review: what the program suggested, what the coder decided, and the
`jsonl:` dataset line it becomes.

Every change is a pure function from a NoteReview to a new one. A change to a suggestion names
the state the page showed (`seen`); when the suggestion has changed since (another tab), the
change is refused with Conflict rather than applied over a decision the coder never saw.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from review.errors import Conflict, ReviewError

ACCEPTED, REJECTED, REPLACED, PENDING = "accepted", "rejected", "replaced", "pending"
IN_PROGRESS, REVIEWED = "in progress", "reviewed"


@dataclass(frozen=True)
class Span:
    """Character offsets into the note, end exclusive."""

    start: int
    end: int


@dataclass(frozen=True)
class Suggestion:
    """A code the program proposed, with the note spans it quoted (`unplaced`: quotes it gave
    that are not in the note)."""

    code: str
    description: str = ""
    rationale: str = ""
    spans: tuple[Span, ...] = ()
    unplaced: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    verdict: str
    reviewer: str
    time: str
    reason: str = ""
    replacement: str = ""

    @property
    def token(self) -> str:
        """The state as a page shows it, sent back with the next change as `seen`."""
        return f"{REPLACED}:{self.replacement}" if self.verdict == REPLACED else self.verdict


@dataclass(frozen=True)
class Added:
    """A code the coder added, with the words of the note they selected as its evidence."""

    code: str
    span: Span
    reviewer: str
    time: str

    @property
    def key(self) -> str:
        return f"{self.code}@{self.span.start}-{self.span.end}"


@dataclass(frozen=True)
class NoteReview:
    id: str
    text: str
    suggestions: tuple[Suggestion, ...]
    decisions: Mapping[str, Decision] = field(default_factory=dict)
    added: tuple[Added, ...] = ()
    done: bool = False
    reviewer: str = ""
    time: str = ""
    program: str = ""

    @property
    def touched(self) -> bool:
        return bool(self.decisions or self.added or self.done)

    @property
    def pending(self) -> list[str]:
        return [s.code for s in self.suggestions if s.code not in self.decisions]

    @property
    def status(self) -> str:
        return REVIEWED if self.done else IN_PROGRESS

    @property
    def changed(self) -> bool:
        """Whether the coder disagreed with the program: a code rejected, replaced or added."""
        return bool(self.added) or any(d.verdict != ACCEPTED for d in self.decisions.values())

    def token(self, code: str) -> str:
        decision = self.decisions.get(code)
        return decision.token if decision else PENDING

    def suggestion(self, index: int) -> Suggestion:
        if not 0 <= index < len(self.suggestions):
            raise ReviewError(f"note {self.id} has no suggestion {index}")
        return self.suggestions[index]

    def final(self) -> list[tuple[str, tuple[Span, ...]]]:
        """The coder's codes in order (accepted, replacements, added), each with its spans."""
        spans: dict[str, list[Span]] = {}
        for item in self.suggestions:
            decision = self.decisions.get(item.code)
            if decision and decision.verdict in (ACCEPTED, REPLACED):
                code = item.code if decision.verdict == ACCEPTED else decision.replacement
                spans.setdefault(code, []).extend(item.spans)
        for item in self.added:
            spans.setdefault(item.code, []).append(item.span)
        return [(code, tuple(dict.fromkeys(found))) for code, found in spans.items()]

    def final_codes(self) -> list[str]:
        return [code for code, _ in self.final()]


def decide(note: NoteReview, index: int, verdict: str, *, seen: str, who: str, when: str,
           reason: str = "", replacement: str = "") -> NoteReview:
    """Accept, reject (with an optional reason) or replace suggestion `index`; `pending` undoes."""
    item = note.suggestion(index)
    current = note.token(item.code)
    if seen != current:
        raise Conflict(f"{item.code} was changed in another tab (now {current}); nothing was applied")
    decisions = dict(note.decisions)
    if verdict == PENDING:
        decisions.pop(item.code, None)
    elif verdict in (ACCEPTED, REJECTED, REPLACED):
        if verdict == REPLACED and (not replacement or replacement == item.code):
            raise ReviewError(f"replace {item.code} with another code")
        decisions[item.code] = Decision(verdict, who, when, reason.strip() if verdict == REJECTED else "",
                                        replacement if verdict == REPLACED else "")
    else:
        raise ReviewError(f"unknown decision {verdict!r}; use accepted, rejected, replaced or pending")
    done = note.done and verdict != PENDING
    return replace(note, decisions=decisions, done=done, reviewer=who, time=when)


def add(note: NoteReview, code: str, start: int, end: int, *, who: str, when: str) -> NoteReview:
    """Add a missed code with the selected words as evidence (surrounding blanks trimmed)."""
    if not 0 <= start < end <= len(note.text):
        raise ReviewError(f"selection {start}-{end} is outside note {note.id} ({len(note.text)} characters)")
    words = note.text[start:end]
    if not words.strip():
        raise ReviewError("select some words of the note as the evidence of the code")
    start += len(words) - len(words.lstrip())
    end -= len(words) - len(words.rstrip())
    item = Added(code, Span(start, end), who, when)
    if any(a.key == item.key for a in note.added):
        return note
    return replace(note, added=note.added + (item,), reviewer=who, time=when)


def remove_added(note: NoteReview, key: str, *, who: str, when: str) -> NoteReview:
    kept = tuple(a for a in note.added if a.key != key)
    if len(kept) == len(note.added):
        raise Conflict(f"{key.split('@')[0]} is no longer among the added codes (removed in another tab?)")
    return replace(note, added=kept, reviewer=who, time=when)


def mark_done(note: NoteReview, done: bool, *, who: str, when: str) -> NoteReview:
    """Mark the note reviewed (every suggestion decided) or reopen it."""
    if done and note.pending:
        raise ReviewError(f"decide {', '.join(note.pending)} first")
    return replace(note, done=done, reviewer=who, time=when)


# --- the jsonl: dataset line ---------------------------------------------------------------


def to_line(note: NoteReview) -> dict:
    """`{"id", "text", "codes", "evidence"}` as data/jsonl.py reads them, plus "review": who,
    when, the status, the program's original suggestion and every decision."""
    final = note.final()
    return {
        "id": note.id,
        "text": note.text,
        "codes": [code for code, _ in final],
        "evidence": [{"code": code, "start": s.start, "end": s.end} for code, spans in final for s in spans],
        "review": {
            "status": note.status,
            "reviewer": note.reviewer,
            "time": note.time,
            "suggestion": {
                "program": note.program,
                "codes": [
                    {"code": s.code, "description": s.description, "rationale": s.rationale,
                     "evidence": [{"start": x.start, "end": x.end} for x in s.spans], "unplaced": list(s.unplaced)}
                    for s in note.suggestions
                ],
            },
            "decisions": [
                {"code": code, "verdict": d.verdict, **({"reason": d.reason} if d.reason else {}),
                 **({"replacement": d.replacement} if d.replacement else {}), "reviewer": d.reviewer, "time": d.time}
                for code, d in note.decisions.items()
            ],
            "added": [
                {"code": a.code, "start": a.span.start, "end": a.span.end, "reviewer": a.reviewer, "time": a.time}
                for a in note.added
            ],
        },
    }


def from_line(payload: dict, where: str) -> NoteReview:
    """The NoteReview a `to_line` line holds; ReviewError naming `where` when it is not one."""
    try:
        review = payload["review"]
        text = payload["text"]
        suggestions = tuple(
            Suggestion(s["code"], s.get("description", ""), s.get("rationale", ""),
                       tuple(Span(int(e["start"]), int(e["end"])) for e in s.get("evidence", ())),
                       tuple(s.get("unplaced", ())))
            for s in review["suggestion"]["codes"]
        )
        decisions = {
            d["code"]: Decision(d["verdict"], d.get("reviewer", ""), d.get("time", ""), d.get("reason", ""),
                                d.get("replacement", ""))
            for d in review.get("decisions", ())
        }
        added = tuple(
            Added(a["code"], Span(int(a["start"]), int(a["end"])), a.get("reviewer", ""), a.get("time", ""))
            for a in review.get("added", ())
        )
        note = NoteReview(str(payload["id"]), text, suggestions, decisions, added, review.get("status") == REVIEWED,
                          review.get("reviewer", ""), review.get("time", ""), review["suggestion"].get("program", ""))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ReviewError(f"{where}: not a review line (needs id, text and review.suggestion)") from None
    codes = {s.code for s in suggestions}
    spans = [x for s in suggestions for x in s.spans] + [a.span for a in added]
    if not isinstance(text, str) or any(not 0 <= x.start < x.end <= len(text) for x in spans):
        raise ReviewError(f"{where}: an evidence span is outside the note text")
    if any(code not in codes or d.verdict not in (ACCEPTED, REJECTED, REPLACED) or (d.verdict == REPLACED) != bool(d.replacement)
           for code, d in decisions.items()):
        raise ReviewError(f"{where}: a decision names a code that was not suggested, or an unknown verdict")
    return note
