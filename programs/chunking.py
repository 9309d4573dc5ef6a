"""Split a note that is too long for the model's context into parts at paragraph, line or
sentence boundaries."""

from __future__ import annotations

import re

BOUNDARIES = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?])\s+"), re.compile(r"\s+"))


def split_note(note: str, max_chars: int) -> list[str]:
    """Parts of at most `max_chars` characters (a single longer word is cut), in note order."""
    if len(note) <= max_chars:
        return [note]
    return [part for part in _split(note, max_chars, 0) if part.strip()]


def _split(text: str, max_chars: int, level: int) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    if level == len(BOUNDARIES):
        return [text[i : i + max_chars] for i in range(0, len(text), max_chars)]
    parts: list[str] = []
    current = ""
    position = 0
    pieces = []
    for match in BOUNDARIES[level].finditer(text):
        pieces.append(text[position : match.end()])
        position = match.end()
    pieces.append(text[position:])
    for piece in pieces:
        if len(current) + len(piece) <= max_chars:
            current += piece
            continue
        if current:
            parts.append(current)
        if len(piece) > max_chars:
            parts.extend(_split(piece, max_chars, level + 1))
            current = ""
        else:
            current = piece
    if current:
        parts.append(current)
    return parts
