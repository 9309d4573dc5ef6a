"""The record every coding program returns: codes with evidence, a per-stage trace, LM usage."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Span:
    """Character offsets into the note (`note[start:end] == text`)."""

    start: int
    end: int
    text: str

    def overlaps(self, other: Span | None) -> bool:
        return other is not None and self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class Evidence:
    """A quote the LM gave and where it was found in the note (`span` is None when it was not).

    `match` is exact | normalized | fuzzy | none.
    """

    quote: str
    span: Span | None
    match: str


@dataclass(frozen=True)
class CodedDiagnosis:
    code: str
    description: str
    evidence: tuple[Evidence, ...]
    rationale: str


@dataclass(frozen=True)
class Dropped:
    item: str
    reason: str


CONSTRAINED = ("grammar", "json-schema", "llama.cpp", "vllm")
PARSE_FAILED = ("json-retry", "lenient", "unparsed")


@dataclass(frozen=True)
class Answer:
    """How one LM answer of a stage was produced (`path`): decoded under the call's schema
    (grammar | json-schema | llama.cpp | vllm), or read by ChatAdapter (chat), by DSPy's JSON
    retry after ChatAdapter failed (json-retry), by the lenient reader (lenient), or not at all,
    the stage's rules standing in (unparsed). `outside`: values of the call's narrowed fields
    that are not among those it listed; `overrides`: tokens where the embedded model's grammar
    overrode the model (0 when the answer came from DSPy's cache)."""

    path: str
    outside: int = 0
    overrides: int = 0

    @property
    def constrained(self) -> bool:
        return self.path in CONSTRAINED

    @property
    def parse_failed(self) -> bool:
        return self.path in PARSE_FAILED


@dataclass
class StageTrace:
    """What one stage proposed, what it kept and what it dropped (and why).

    `codes` are the ICD-10-CM codes the stage passes on to the next (the last such stage's are
    the result's codes); None for a stage that deals in text only (extraction).
    """

    stage: str
    proposed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    codes: list[str] | None = None
    answers: list[Answer] = field(default_factory=list)

    def drop(self, item: str, reason: str) -> None:
        self.dropped.append(Dropped(item, reason))

    def summary(self) -> str:
        """One line: '4 proposed, 3 kept, 1 dropped; 4 LM answers (grammar)'."""
        text = f"{len(self.proposed)} proposed, {len(self.kept)} kept, {len(self.dropped)} dropped"
        if not self.answers:
            return text
        paths: dict[str, int] = {}
        for answer in self.answers:
            paths[answer.path] = paths.get(answer.path, 0) + 1
        how = ", ".join(path if count == len(self.answers) else f"{path} {count}" for path, count in paths.items())
        outside = sum(answer.outside > 0 for answer in self.answers)
        plural = "" if len(self.answers) == 1 else "s"
        return f"{text}; {len(self.answers)} LM answer{plural} ({how})" + (f", {outside} outside the list" if outside else "")

    def extend(self, part: StageTrace) -> None:
        """Append what `part` (the same stage's record of one item, made apart, e.g. on another
        thread) proposed, kept, dropped, logged and answered."""
        self.proposed.extend(part.proposed)
        self.kept.extend(part.kept)
        self.dropped.extend(part.dropped)
        self.log.extend(part.log)
        self.answers.extend(part.answers)

    def pass_on(self, codes) -> None:
        """Add `codes` to the codes passed on, without repeats, in order."""
        for code in codes:
            if code not in self.codes:
                self.codes.append(code)


@dataclass
class CodingResult:
    program: str
    codes: list[CodedDiagnosis]
    trace: list[StageTrace]
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def code_list(self) -> list[str]:
        return [item.code for item in self.codes]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> CodingResult:
        codes = [
            CodedDiagnosis(
                code=item["code"],
                description=item["description"],
                evidence=tuple(
                    Evidence(ev["quote"], Span(**ev["span"]) if ev["span"] else None, ev["match"])
                    for ev in item["evidence"]
                ),
                rationale=item["rationale"],
            )
            for item in payload["codes"]
        ]
        trace = [
            StageTrace(
                stage=stage["stage"],
                proposed=list(stage["proposed"]),
                kept=list(stage["kept"]),
                dropped=[Dropped(**d) for d in stage["dropped"]],
                log=list(stage["log"]),
                codes=None if stage.get("codes") is None else list(stage["codes"]),
                answers=[Answer(**answer) for answer in stage.get("answers") or []],
            )
            for stage in payload["trace"]
        ]
        return cls(program=payload["program"], codes=codes, trace=trace, usage=dict(payload.get("usage", {})))
