"""Worked demos derived from gold labels, without LM calls: each gold code of a training note
with the phrase that documents it (the gold mention, else the code's title) and the sentence
of the note that holds it. The programs turn these into demos for their own stages."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from programs.guarantees import tokens

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
MAX_DIAGNOSES = 4
MAX_SENTENCE_CHARS = 300
GENERIC = {"unspecified", "other", "of", "the", "and", "with", "without", "in", "to", "or", "due", "not", "elsewhere", "classified"}


@dataclass(frozen=True)
class GoldDiagnosis:
    code: str
    phrase: str
    sentence: str
    position: int


def sentences(note: str) -> list[str]:
    """The note's sentences (and headings), each on one line."""
    return [" ".join(part.split()) for part in SENTENCE_END.split(note) if len(part.strip()) > 2]


def gold_diagnoses(example, kb, limit: int = MAX_DIAGNOSES) -> list[GoldDiagnosis]:
    """Up to `limit` of the example's billable gold codes, each with its phrase and the sentence
    of the note that documents it, in note order."""
    mentions = {}
    for mention in example.get("mentions") or []:
        mentions.setdefault(mention["code"], mention["phrase"])
    parts = sentences(example.note)
    found = []
    for code in example.codes:
        info = kb.get(code)
        if info is None or not info.billable:
            continue
        phrase = mentions.get(code) or info.description
        sentence = _sentence_for(phrase, info.description, parts)
        if sentence:
            found.append(GoldDiagnosis(code, phrase, sentence[:MAX_SENTENCE_CHARS], parts.index(sentence)))
    return sorted(found, key=lambda d: d.position)[:limit]


def excerpt(note: str, diagnoses: Iterable[GoldDiagnosis], context: int = 1) -> str:
    """The documenting sentences with `context` sentences either side, in note order, as a short
    stand-in for the note."""
    parts = sentences(note)
    keep = sorted({i for d in diagnoses for i in range(d.position - context, d.position + context + 1) if 0 <= i < len(parts)})
    return "\n".join(parts[i][:MAX_SENTENCE_CHARS] for i in keep)


def with_gold(listed: list[str], gold: str, limit: int) -> list[str]:
    """`listed` (codes, or lines starting with the code) cut to `limit`, the gold one kept: put
    in the place of the last when retrieval missed it."""
    listed = listed[:limit]
    if any(item.split(":")[0].strip() == gold.split(":")[0].strip() for item in listed):
        return listed
    return [*listed[: limit - 1], gold]


def _sentence_for(phrase: str, description: str, parts: list[str]) -> str | None:
    lowered = phrase.lower()
    for part in parts:
        if lowered in part.lower():
            return part
    wanted = (tokens(phrase) | tokens(description)) - GENERIC
    best = max(parts, key=lambda part: len(wanted & tokens(part)), default=None)
    if best is None or 2 * len(wanted & tokens(best)) < len(tokens(phrase) - GENERIC):
        return None
    return best
