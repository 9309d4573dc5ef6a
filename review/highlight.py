"""A note cut into segments for display: each segment knows its offset in the note, the codes
whose evidence covers it, and whether it is a section heading ('ASSESSMENT AND PLAN:')."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# A line's leading upper-case words ending with a colon, or an upper-case line on its own.
HEADING = re.compile(r"^[ \t]*([A-Z][A-Z0-9 &/,'()-]{1,}[A-Z)](?::|(?=[ \t]*\r?$)))", re.M)
PALETTE_SIZE = 10


@dataclass(frozen=True)
class Mark:
    """Evidence of one code on the page: `key` names the card ('s0' suggestion 0, 'a1' added 1)."""

    key: str
    start: int
    end: int


@dataclass(frozen=True)
class Segment:
    start: int
    text: str
    keys: tuple[str, ...]
    heading: bool


def headings(text: str) -> list[tuple[int, int]]:
    return [match.span(1) for match in HEADING.finditer(text)]


def segments(text: str, marks: Iterable[Mark]) -> list[Segment]:
    """Consecutive pieces of `text` (together the whole text) with the mark keys covering each."""
    marks = [m for m in marks if 0 <= m.start < m.end <= len(text)]
    heads = headings(text)
    cuts = sorted({0, len(text), *(m.start for m in marks), *(m.end for m in marks),
                   *(s for s, _ in heads), *(e for _, e in heads)})
    pieces: list[Segment] = []
    for start, end in zip(cuts, cuts[1:]):
        keys = tuple(dict.fromkeys(m.key for m in marks if m.start <= start and end <= m.end))
        heading = any(s <= start and end <= e for s, e in heads)
        if pieces and pieces[-1].keys == keys and pieces[-1].heading == heading:
            last = pieces.pop()
            pieces.append(Segment(last.start, last.text + text[start:end], keys, heading))
        else:
            pieces.append(Segment(start, text[start:end], keys, heading))
    return pieces
