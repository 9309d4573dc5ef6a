"""What every program guarantees, whatever the LM says: notes are real text, every code is a
valid billable code of the loaded release, every evidence span quotes the note."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from data.text import Binary, NotText, decode_text
from icd_graph.codes import referenced
from programs.errors import NoteError
from programs.result import CodedDiagnosis, Evidence, Span, StageTrace
from programs.spans import TOKEN, locate

ENCOUNTER = re.compile(r", (?=(?:initial|subsequent) encounter|sequela$)", re.IGNORECASE)
FILLER = frozenset({"of", "the", "and", "with", "in", "to", "or", "by", "for"})
WITHOUT = re.compile(r"\bwithout\b(.*?)(?=,|\bwith\b|$)", re.IGNORECASE)


def check_note(text: str, source: str = "the note") -> str:
    """The note itself; NoteError for empty or binary text."""
    if not isinstance(text, str) or "\x00" in text:
        raise NoteError(f"{source} is binary, not text: give a plain-text clinical note")
    if not text.strip():
        raise NoteError(f"{source} is empty: give a clinical note with some text")
    return text


def tokens(text: str) -> set[str]:
    return {token.lower() for token in TOKEN.findall(text) if len(token) > 1}


@dataclass(frozen=True)
class Repair:
    """`code` is the billable code to use (None: drop `raw`); `reason` says what was done."""

    raw: str
    code: str | None
    reason: str


def repair_code(kb, raw: str, context: str = "") -> Repair:
    """Map LM text to a billable code: kept when billable, completed through the knowledge base
    when it is a valid but non-billable or incomplete code (`best_billable`), dropped otherwise."""
    text = raw.strip().strip(".,;:'\"` ")
    if not text:
        return Repair(raw, None, "empty code")
    check = kb.validate(text)
    if check.valid and check.billable:
        return Repair(raw, check.code, "")
    if check.completions:
        chosen = best_billable(kb, check.code, context)
        return Repair(raw, chosen, f"{text} is not billable; completed to {chosen}")
    return Repair(raw, None, check.reason or f"{text} is not a billable code of the loaded release")


def best_billable(kb, code: str, context: str) -> str:
    """The billable code under `code` a coder would pick for `context`: the one that asserts most
    of what the context asserts, then the one that asserts least that neither the context nor
    `code` says (with no complication documented, the default 'without ...' code: 'diabetic
    retinopathy' -> E11.319 '... without macular edema', not E11.311 '... with macular edema';
    with no side, the unspecified side), then the initial encounter, then an 'unspecified'
    code, then code order. Filler words ('of', 'with') count for nothing; what a 'without ...'
    clause names is not asserted, in the context or in a description."""
    said = asserted_words(context) - FILLER
    known = said | tokens(kb.require(code).description) | FILLER

    def rank(candidate: str):
        description = kb.require(candidate).description
        condition, encounter = (ENCOUNTER.split(description) + [""])[:2]
        asserted = asserted_words(condition)
        return (
            -len(said & (asserted | tokens(encounter))),
            len(asserted - known),
            encounter.lower().startswith(("subsequent", "sequela")),
            "unspecified" not in description.lower(),
            candidate,
        )

    return min(kb.complete(code), key=rank)


def asserted_words(text: str) -> set[str]:
    """The words `text` asserts: not those of its 'without ...' clauses, nor 'unspecified'."""
    return tokens(WITHOUT.sub(" ", text)) - {"unspecified"}


class Assembler:
    """Collects the codes a program settles on and turns them into checked result records."""

    def __init__(self, kb, note: str):
        self.kb = kb
        self.note = note
        self._codes: dict[str, tuple[list[Evidence], list[str]]] = {}

    def repair(self, raw: str, trace: StageTrace, context: str = "") -> str | None:
        """The billable code `raw` stands for (see `repair_code`), or None; logged in `trace`."""
        repair = repair_code(self.kb, raw, context)
        if repair.code is None:
            trace.drop(raw, repair.reason)
        elif repair.reason:
            trace.log.append(repair.reason)
        return repair.code

    def add(self, raw: str, quotes: Iterable[str | Span], rationale: str, trace: StageTrace, context: str = "") -> str | None:
        """Repair `raw`, locate its quotes (a Span is where the rules found it); log in `trace`.
        Returns the code kept, or None."""
        code = self.repair(raw, trace, context)
        if code is None:
            return None
        evidence, rationales = self._codes.setdefault(code, ([], []))
        for quote in quotes:
            found = Evidence(quote.text, quote, "exact") if isinstance(quote, Span) else locate(self.note, quote)
            if found.span is None:
                trace.log.append(f"{code}: evidence {quote!r} not found in the note; no span")
            elif found.match == "fuzzy":
                trace.log.append(f"{code}: evidence {quote!r} is not verbatim; aligned to {found.span.text!r}")
            if all(found.span != known.span or found.quote != known.quote for known in evidence):
                evidence.append(found)
        if rationale and rationale not in rationales:
            rationales.append(rationale)
        if code not in trace.kept:
            trace.kept.append(code)
        return code

    def quotes(self, code: str) -> list[str]:
        """The quotes given as evidence for `code`."""
        return [evidence.quote for evidence in self._codes[code][0]]

    def remove(self, code: str) -> None:
        self._codes.pop(code, None)

    @property
    def codes(self) -> list[str]:
        return sorted(self._codes)

    def build(self) -> list[CodedDiagnosis]:
        result = []
        for code in self.codes:
            evidence, rationales = self._codes[code]
            located = sorted((e for e in evidence if e.span), key=lambda e: (e.span.start, e.span.end))
            missing = [e for e in evidence if not e.span]
            result.append(
                CodedDiagnosis(
                    code=code,
                    description=self.kb.require(code).description,
                    evidence=tuple(located + missing),
                    rationale=" ".join(rationales),
                )
            )
        return result


def reconcile(kb, codes: Sequence[str], trace: StageTrace) -> list[str]:
    """The final set: duplicates, Excludes1 conflicts (the later code goes) and less specific
    codes of a category that has a more specific one are removed; logged in `trace`."""
    kept: list[str] = []
    for code in codes:
        if code in kept:
            continue
        conflict = next((other for other in kept if _excludes1(kb, other, code)), None)
        if conflict:
            trace.drop(code, f"Excludes1 conflict with {conflict}")
            continue
        kept.append(code)
    vague = {code for code in kept if _unspecific(code, kb.require(code).description)}
    final = []
    for code in kept:
        specific = [other for other in kept if other[:3] == code[:3] and other not in vague]
        if code in vague and specific:
            trace.drop(code, f"less specific than {specific[0]} in the same category")
            continue
        final.append(code)
    return final


def _unspecific(code: str, description: str) -> bool:
    """A category's catch-all: 'without complications', or an 'unspecified' code at most one
    character below its category (I50.9, E78.5; not E11.3299 '..., unspecified eye', which is
    specific about everything else)."""
    text = description.lower()
    return "without complications" in text or ("unspecified" in text and len(code.replace(".", "")) <= 4)


def _excludes1(kb, a: str, b: str) -> bool:
    """True when an Excludes1 note of `a` names `b` or one of `b` names `a`."""
    return any(
        note.kind == "excludes1" and referenced(note.text, y)
        for x, y in ((a, b), (b, a))
        for note in kb.notes(x, inherited=True)
    )


def decode_note(data: bytes, source: str) -> str:
    """Note text from raw bytes (UTF-8, or UTF-16/32 with or without a mark: data.text);
    NoteError for binary, undecodable or empty input."""
    try:
        text = decode_text(data)
    except Binary as exc:
        raise NoteError(f"{source} {exc}: give a plain-text clinical note") from None
    except NotText as exc:
        raise NoteError(f"{source} {exc}") from None
    return check_note(text, source)
