"""Find a quote an LM gave in the note: exact, then case/whitespace-insensitive, then the
best fuzzy sentence match above a threshold."""

from __future__ import annotations

import re
from collections import Counter

from programs.result import Evidence, Span

TOKEN = re.compile(r"\w+")
SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
QUOTE_TRIM = " \t\r\n\"'`“”‘’"
FUZZY_THRESHOLD = 0.6


def locate(note: str, quote: str, threshold: float = FUZZY_THRESHOLD) -> Evidence:
    """Where `quote` is in `note`; `Evidence.span` is None when nothing matches well enough."""
    wanted = quote.strip(QUOTE_TRIM)
    if not wanted or not TOKEN.search(wanted):
        return Evidence(quote, None, "none")
    start = note.find(wanted)
    if start >= 0:
        return Evidence(quote, Span(start, start + len(wanted), wanted), "exact")
    span = _normalized_find(note, wanted)
    if span:
        return Evidence(quote, span, "normalized")
    span = _best_sentence(note, wanted, threshold)
    if span:
        return Evidence(quote, span, "fuzzy")
    return Evidence(quote, None, "none")


def _normalized_find(note: str, wanted: str) -> Span | None:
    """Case-insensitive match where any run of whitespace matches any other."""
    pattern = r"\s+".join(re.escape(part) for part in wanted.split())
    match = re.search(pattern, note, flags=re.IGNORECASE)
    if not match:
        return None
    return Span(match.start(), match.end(), note[match.start() : match.end()])


def _best_sentence(note: str, wanted: str, threshold: float) -> Span | None:
    target = Counter(token.lower() for token in TOKEN.findall(wanted))
    best: tuple[float, int, int] | None = None
    for match in SENTENCE.finditer(note):
        text = match.group()
        tokens = Counter(token.lower() for token in TOKEN.findall(text))
        if not tokens:
            continue
        common = sum((target & tokens).values())
        score = 2 * common / (sum(target.values()) + sum(tokens.values()))
        if score >= threshold and (best is None or score > best[0]):
            lead = len(text) - len(text.lstrip())
            trail = len(text.rstrip())
            best = (score, match.start() + lead, match.start() + trail)
    if best is None:
        return None
    return Span(best[1], best[2], note[best[1] : best[2]])
