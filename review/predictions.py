"""Read a predictions file into suggestions: the lines `predict --output` writes ({"id", "codes",
"result"}: descriptions, rationales, evidence spans and the trace) or the plain lines `evaluate`
reads ({"id", "codes", "evidence"?})."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from data.errors import DatasetError
from data.jsonl import read_json_lines
from icd_graph.codes import normalize
from icd_graph.errors import MalformedCode
from programs.result import CodingResult, StageTrace
from review.errors import ReviewError
from review.model import Span, Suggestion


@dataclass(frozen=True)
class Predicted:
    program: str
    suggestions: tuple[Suggestion, ...]
    trace: tuple[StageTrace, ...] = field(default_factory=tuple)


def read_predictions(path: Path, texts: Mapping[str, str]) -> tuple[dict[str, Predicted], list[str]]:
    """Suggestions per note id, and the ids of lines whose note is not in `texts` (ignored).
    Spans that do not quote the note (`texts[id][start:end]`) become unplaced quotes."""
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"predictions file not found: {path}")
    found: dict[str, Predicted] = {}
    unknown: list[str] = []
    try:
        for where, payload in read_json_lines(path):
            if not isinstance(payload, dict) or not isinstance(payload.get("id"), (str, int)):
                raise ReviewError(f'{where}: expected an object with "id" and "codes"')
            note_id = str(payload["id"])
            if note_id not in texts:
                unknown.append(note_id)
                continue
            if note_id in found:
                raise ReviewError(f"{where}: duplicate prediction for id {note_id!r}")
            found[note_id] = parse(payload, texts[note_id], where)
    except DatasetError as exc:
        raise ReviewError(str(exc)) from None
    return found, unknown


def parse(payload: dict, text: str, where: str) -> Predicted:
    result = payload.get("result")
    if isinstance(result, dict):
        try:
            coded = CodingResult.from_dict(result)
        except (KeyError, TypeError, ValueError):
            raise ReviewError(f'{where}: "result" is not a program result (programs/result.py)') from None
        suggestions = []
        for item in coded.codes:
            placed = [e for e in item.evidence if e.span and text[e.span.start:e.span.end] == e.span.text]
            spans = tuple(dict.fromkeys(Span(e.span.start, e.span.end) for e in placed))
            unplaced = tuple(e.quote for e in item.evidence if e not in placed and e.quote.strip())
            suggestions.append(Suggestion(code_of(item.code), item.description, item.rationale, spans, unplaced))
        return Predicted(coded.program, unique(suggestions), tuple(coded.trace))
    codes = payload.get("codes")
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise ReviewError(f'{where}: "codes" must be a list of strings')
    spans: dict[str, list[Span]] = {}
    try:
        for item in payload.get("evidence") or ():
            start, end = int(item["start"]), int(item["end"])
            if 0 <= start < end <= len(text):
                spans.setdefault(code_of(item["code"]), []).append(Span(start, end))
    except (KeyError, TypeError, ValueError, AttributeError):
        raise ReviewError(f'{where}: "evidence" items need code, start and end') from None
    return Predicted("", unique(Suggestion(code_of(c), spans=tuple(spans.get(code_of(c), ()))) for c in codes))


def code_of(text: str) -> str:
    """The dotted upper-case spelling of a well-formed code; anything else as given."""
    try:
        return normalize(text)
    except MalformedCode:
        return text.strip()


def unique(suggestions) -> tuple[Suggestion, ...]:
    """One suggestion per code (the first), so a decision names a code once."""
    seen: dict[str, Suggestion] = {}
    for item in suggestions:
        seen.setdefault(item.code, item)
    return tuple(seen.values())
