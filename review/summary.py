"""The program as judged by the coder: over the reviewed notes, the coder's codes are the gold
and the program's suggestions the predictions (precision = suggested codes the coder kept,
recall = the coder's codes the program suggested), per code and overall."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from optimizers.metrics import Counts
from review.model import REJECTED, REPLACED, NoteReview


@dataclass(frozen=True)
class CodeRow:
    code: str
    counts: Counts
    rejected: int
    added: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Summary:
    reviewed: int
    total: int
    overall: Counts
    codes: tuple[CodeRow, ...]

    def most_rejected(self, n: int = 10) -> list[CodeRow]:
        rows = [row for row in self.codes if row.rejected]
        return sorted(rows, key=lambda row: (-row.rejected, row.code))[:n]

    def most_added(self, n: int = 10) -> list[CodeRow]:
        rows = [row for row in self.codes if row.added]
        return sorted(rows, key=lambda row: (-row.added, row.code))[:n]

    def as_dict(self) -> dict:
        def prf(counts: Counts) -> dict:
            return {"tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "precision": counts.precision,
                    "recall": counts.recall, "f1": counts.f1}

        return {
            "reviewed": self.reviewed,
            "total": self.total,
            "overall": prf(self.overall),
            "codes": [{"code": r.code, **prf(r.counts), "rejected": r.rejected, "added": r.added,
                       "reasons": list(r.reasons)} for r in self.codes],
            "most_rejected": [r.code for r in self.most_rejected()],
            "most_added": [r.code for r in self.most_added()],
        }


def summarize(notes: Iterable[NoteReview]) -> Summary:
    """Counts over the notes marked reviewed; `total` counts every note given."""
    per_code: dict[str, Counts] = defaultdict(Counts)
    rejected: Counter[str] = Counter()
    added: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = defaultdict(Counter)
    reviewed = total = 0
    for note in notes:
        total += 1
        if not note.done:
            continue
        reviewed += 1
        suggested = {s.code for s in note.suggestions}
        final = set(note.final_codes())
        for code in suggested | final:
            per_code[code] += Counts(tp=int(code in suggested and code in final),
                                     fp=int(code in suggested and code not in final),
                                     fn=int(code in final and code not in suggested))
        for code in final - suggested:
            added[code] += 1
        for code, decision in note.decisions.items():
            if decision.verdict in (REJECTED, REPLACED):
                rejected[code] += 1
                reason = decision.reason or (f"replaced by {decision.replacement}" if decision.replacement else "")
                if reason:
                    reasons[code][reason] += 1
    overall = sum(per_code.values(), Counts())
    rows = tuple(
        CodeRow(code, counts, rejected[code], added[code], tuple(r for r, _ in reasons[code].most_common(5)))
        for code, counts in sorted(per_code.items())
    )
    return Summary(reviewed, total, overall, rows)
