"""Dataset records: one type for every source (ACI-BENCH, MDACE, JSONL)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Evidence:
    """A gold or predicted span of note text (character offsets, end exclusive) for a code."""

    code: str
    start: int
    end: int


@dataclass(frozen=True)
class Mention:
    """A diagnosis phrase annotated with its code."""

    phrase: str
    code: str


@dataclass(frozen=True)
class NoteRecord:
    id: str
    text: str
    codes: tuple[str, ...]
    evidence: tuple[Evidence, ...] = ()
    mentions: tuple[Mention, ...] = ()


@dataclass(frozen=True)
class FlaggedCode:
    """A gold code kept as given although it is not a valid billable code of the release."""

    note_id: str
    code: str
    reason: str


@dataclass(frozen=True)
class LoadReport:
    notes: int
    codes: int
    flagged: tuple[FlaggedCode, ...] = ()
    validated: bool = False
    remarks: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return {
            "notes": self.notes,
            "codes": self.codes,
            "validated": self.validated,
            "flagged": [{"note_id": f.note_id, "code": f.code, "reason": f.reason} for f in self.flagged],
            "remarks": list(self.remarks),
        }


@dataclass(frozen=True)
class Dataset:
    name: str
    records: tuple[NoteRecord, ...]
    report: LoadReport

    @classmethod
    def collect(cls, name: str, records, flagged, *, validated: bool, remarks=()) -> Dataset:
        """A dataset with its load report counted from the records."""
        records = tuple(records)
        report = LoadReport(
            notes=len(records),
            codes=sum(len(r.codes) for r in records),
            flagged=tuple(flagged),
            validated=validated,
            remarks=tuple(remarks),
        )
        return cls(name, records, report)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)
