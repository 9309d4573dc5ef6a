"""Scores of predicted ICD-10-CM codes against gold codes. Pure Python, no DSPy.

Codes are compared as given: normalise them (dotted, upper case) before scoring.
- micro: precision / recall / F1 over the pooled (note, code) decisions.
- macro: the mean of per-code precision, recall and F1 over every code that occurs in the gold
  or the predictions of at least one note (a code never predicted has precision 0).
- category: the same at the level of the first three characters ('E11.9' -> 'E11').
- exact match: the share of notes whose predicted set equals the gold set.
- evidence: token-level F1 between predicted and gold spans of the same code, counted over
  the correctly predicted codes that have gold evidence (evidence quality given the code).
"""

from __future__ import annotations

import random
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from data.records import Evidence

TOKEN = re.compile(r"\w+")


@dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp + self.fp + self.fn else 0.0


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class NoteScore:
    id: str
    gold: tuple[str, ...]
    predicted: tuple[str, ...]
    codes: Counts
    categories: Counts
    evidence: Counts | None

    @property
    def exact(self) -> bool:
        return set(self.gold) == set(self.predicted)


@dataclass(frozen=True)
class Scores:
    notes: tuple[NoteScore, ...]
    micro: PRF
    macro: PRF
    category_micro: PRF
    category_macro: PRF
    exact_match: float
    evidence: PRF | None

    def as_dict(self) -> dict:
        def prf(value: PRF | None) -> dict | None:
            return None if value is None else {"precision": value.precision, "recall": value.recall, "f1": value.f1}

        return {
            "notes": len(self.notes),
            "micro": prf(self.micro),
            "macro": prf(self.macro),
            "category_micro": prf(self.category_micro),
            "category_macro": prf(self.category_macro),
            "exact_match": self.exact_match,
            "evidence": prf(self.evidence),
            "per_note": [
                {
                    "id": note.id,
                    "gold": list(note.gold),
                    "predicted": list(note.predicted),
                    "precision": note.codes.precision,
                    "recall": note.codes.recall,
                    "f1": code_f1(note.gold, note.predicted),
                    "exact": note.exact,
                    "evidence_f1": None if note.evidence is None else note.evidence.f1,
                }
                for note in self.notes
            ],
        }


def category(code: str) -> str:
    return code[:3]


def counts(gold: Iterable[str], predicted: Iterable[str]) -> Counts:
    gold_set, predicted_set = set(gold), set(predicted)
    tp = len(gold_set & predicted_set)
    return Counts(tp, len(predicted_set) - tp, len(gold_set) - tp)


def code_f1(gold: Iterable[str], predicted: Iterable[str]) -> float:
    """F1 of one note's codes; 1.0 when both sets are empty. The per-example DSPy metric."""
    result = counts(gold, predicted)
    return result.f1 if result.tp + result.fp + result.fn else 1.0


def span_tokens(text: str, spans: Iterable[Evidence]) -> set[int]:
    """Indices of the word tokens of `text` that overlap any of `spans`."""
    spans = list(spans)
    return {
        index
        for index, match in enumerate(TOKEN.finditer(text))
        if any(match.start() < span.end and span.start < match.end() for span in spans)
    }


def evidence_counts(
    text: str, gold: Sequence[Evidence], predicted: Sequence[Evidence], predicted_codes: Iterable[str]
) -> Counts | None:
    """Token counts over the predicted codes that have gold evidence; None when there are none."""
    scored = {span.code for span in gold} & set(predicted_codes)
    if not scored:
        return None
    total = Counts()
    for code in sorted(scored):
        gold_tokens = span_tokens(text, (span for span in gold if span.code == code))
        predicted_tokens = span_tokens(text, (span for span in predicted if span.code == code))
        tp = len(gold_tokens & predicted_tokens)
        total += Counts(tp, len(predicted_tokens) - tp, len(gold_tokens) - tp)
    return total


def score_note(
    id: str,
    gold: Iterable[str],
    predicted: Iterable[str],
    *,
    text: str = "",
    gold_evidence: Sequence[Evidence] = (),
    predicted_evidence: Sequence[Evidence] = (),
) -> NoteScore:
    gold, predicted = tuple(sorted(set(gold))), tuple(sorted(set(predicted)))
    return NoteScore(
        id=id,
        gold=gold,
        predicted=predicted,
        codes=counts(gold, predicted),
        categories=counts(map(category, gold), map(category, predicted)),
        evidence=evidence_counts(text, gold_evidence, predicted_evidence, predicted) if gold_evidence else None,
    )


def micro(total: Counts) -> PRF:
    return PRF(total.precision, total.recall, total.f1)


def macro(pairs: Iterable[tuple[Iterable[str], Iterable[str]]]) -> PRF:
    """Mean per-code precision, recall and F1 over the codes seen in any gold or prediction."""
    per_code: dict[str, Counts] = defaultdict(Counts)
    for gold, predicted in pairs:
        gold, predicted = set(gold), set(predicted)
        for code in gold | predicted:
            per_code[code] += Counts(int(code in gold and code in predicted), int(code not in gold), int(code not in predicted))
    if not per_code:
        return PRF(0.0, 0.0, 0.0)
    values = per_code.values()
    return PRF(
        sum(c.precision for c in values) / len(per_code),
        sum(c.recall for c in values) / len(per_code),
        sum(c.f1 for c in values) / len(per_code),
    )


def aggregate(notes: Sequence[NoteScore]) -> Scores:
    notes = tuple(notes)
    with_evidence = [note.evidence for note in notes if note.evidence is not None]
    return Scores(
        notes=notes,
        micro=micro(sum((note.codes for note in notes), Counts())),
        macro=macro((note.gold, note.predicted) for note in notes),
        category_micro=micro(sum((note.categories for note in notes), Counts())),
        category_macro=macro(
            ({category(c) for c in note.gold}, {category(c) for c in note.predicted}) for note in notes
        ),
        exact_match=sum(note.exact for note in notes) / len(notes) if notes else 0.0,
        evidence=micro(sum(with_evidence, Counts())) if with_evidence else None,
    )


@dataclass(frozen=True)
class Difference:
    """Micro-F1 of system B minus system A with a paired bootstrap confidence interval."""

    a: float
    b: float
    delta: float
    low: float
    high: float
    resamples: int
    confidence: float

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def paired_bootstrap(
    a: Sequence[NoteScore],
    b: Sequence[NoteScore],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Resamples notes with replacement (the same notes for both systems) and recomputes micro F1."""
    by_id = {note.id: note for note in b}
    if not a or len(a) != len(b) or set(by_id) != {note.id for note in a}:
        raise ValueError("paired bootstrap needs both systems scored on the same, non-empty set of notes")
    pairs = [(note.codes, by_id[note.id].codes) for note in a]
    rng = random.Random(seed)
    deltas = []
    for _ in range(resamples):
        sample = [pairs[rng.randrange(len(pairs))] for _ in pairs]
        deltas.append(sum((p[1] for p in sample), Counts()).f1 - sum((p[0] for p in sample), Counts()).f1)
    deltas.sort()
    tail = (1 - confidence) / 2
    f1_a = sum((p[0] for p in pairs), Counts()).f1
    f1_b = sum((p[1] for p in pairs), Counts()).f1
    return Difference(
        a=f1_a,
        b=f1_b,
        delta=f1_b - f1_a,
        low=deltas[int(tail * (resamples - 1))],
        high=deltas[int(round((1 - tail) * (resamples - 1)))],
        resamples=resamples,
        confidence=confidence,
    )
