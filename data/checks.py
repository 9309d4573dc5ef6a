"""Codes through the knowledge base: normalised when well formed, flagged when not billable.

A gold code is never dropped: a malformed one ('834.11A') is kept as given, a well-formed one
that the release does not bill ('S83.91A', a category) is kept in its normalised spelling;
both are flagged and counted in the load report.
"""

from __future__ import annotations

from typing import Protocol

from data.records import FlaggedCode
from icd_graph.codes import normalize
from icd_graph.errors import MalformedCode
from icd_graph.records import Validation


class Validator(Protocol):
    def validate(self, code: str) -> Validation: ...


class CodeChecker:
    """Normalises codes one by one (gold or predicted) and remembers what it flagged."""

    def __init__(self, validator: Validator | None = None):
        self.validator = validator
        self.flagged: list[FlaggedCode] = []

    def __call__(self, note_id: str, raw: str) -> str:
        given = raw.strip()
        try:
            code = normalize(given)
        except MalformedCode:
            self.flag(FlaggedCode(note_id, given, "malformed"))
            return given
        if self.validator is not None:
            validation = self.validator.validate(code)
            if not (validation.valid and validation.billable):
                self.flag(FlaggedCode(note_id, code, validation.reason))
        return code

    def flag(self, flagged: FlaggedCode) -> None:
        if all((f.note_id, f.code) != (flagged.note_id, flagged.code) for f in self.flagged):
            self.flagged.append(flagged)
