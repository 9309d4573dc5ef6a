"""Find a quote an LM gave in the note: exact, then case/whitespace-insensitive, then the note
span that best aligns with it (rapidfuzz), then the best sentence by shared words, each above a
threshold."""

from __future__ import annotations

import re
from collections import Counter

from programs.result import Evidence, Span

TOKEN = re.compile(r"\w+")
SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
QUOTE_TRIM = " \t\r\n\"'`“”‘’"
FUZZY_THRESHOLD = 0.6
ALIGN_THRESHOLD = 88.0
MIN_ALIGN_CHARS = 8


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
    span = _aligned(note, wanted) or _best_sentence(note, wanted, threshold)
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


def _aligned(note: str, wanted: str) -> Span | None:
    """The note span, widened to whole words, that best aligns with `wanted` (case ignored),
    when the alignment scores ALIGN_THRESHOLD or more."""
    from rapidfuzz import fuzz

    if len(wanted) < MIN_ALIGN_CHARS or len(wanted) > len(note):
        return None
    found = fuzz.partial_ratio_alignment(wanted.lower(), note.lower(), score_cutoff=ALIGN_THRESHOLD)
    if found is None:
        return None
    start, end = found.dest_start, found.dest_end
    while start > 0 and note[start - 1].isalnum():
        start -= 1
    while end < len(note) and note[end].isalnum():
        end += 1
    text = note[start:end].strip()
    start += len(note[start:end]) - len(note[start:end].lstrip())
    return Span(start, start + len(text), text) if text else None


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
