"""The deterministic problem extractor: the problems a note's assessment documents, each with its
span, its section and its assertion status, read with medspaCy (PyRuSH sentences, the
Sectionizer, ConText) and the rules of `programs.problem_rules`.

It reads the formats coders meet: problem headings and bullets of an ASSESSMENT AND PLAN
(ACI-BENCH), numbered and '#' problem lists, IMPRESSION and (DISCHARGE) DIAGNOSES sections, and,
in a section that has none of these, the diagnosis a plan sentence names ('consistent with a
right ankle sprain'). A note without any section is read as one assessment."""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

from icd_graph.loading import loading
from programs.problem_rules import (
    ASSERTIONS,
    CONTEXT_CUES,
    DIAGNOSIS_CUES,
    NOT_PROBLEM_LABELS,
    PROBLEM_SECTIONS,
    SECTION_TITLES,
    SENTENCE_WORDS,
)
from programs.result import Span

ITEM = re.compile(r"^(?P<marker>\d{1,2}[.)]|#+|[•\-*·])[ \t]*", re.M)
LABEL = re.compile(r"^(?P<label>[A-Za-z][A-Za-z /&-]{1,40}):\s*")
CLAUSE_END = re.compile(r"\.(?=\s|$)|:|;|\n\s*\n|\n(?=[ \t]*(?:\d{1,2}[.)]|#|[•\-*·])[ \t])")
WORD = re.compile(r"[A-Za-z0-9']+")
LEADING_FILLER = frozenset("a an the has had have with of is was for".split())
MAX_HEADING_WORDS = 12
SENTENCE_PUNCT = frozenset(".!?;")
MAX_PROBLEM_CHARS = 200
RECENT = 64
PRIMARY_LABELS = ("primary", "secondary", "principal", "diagnosis", "diagnoses", "dx", "problem")


@dataclass(frozen=True)
class Problem:
    """A problem the note documents: `text` as written (a heading, a list item, a named
    diagnosis), its `span`, the `section` it is in, its `assertion` (present, negated, possible,
    historical, family or hypothetical), the `form` it was found in and the (start, end) of its
    section's `body`."""

    text: str
    span: Span
    section: str
    assertion: str
    form: str
    body: tuple[int, int] | None = None


class Ahead(Protocol):
    def problems(self, note: str) -> list[Problem] | None:
        """The note's problems, read elsewhere; None when they were not."""


class ProblemExtractor:
    """Loads medspaCy once (about 1 s, on first use; thread-safe) and extracts problems.

    `ahead`, when set (`programs.read_ahead.reading_ahead`), has read a batch's notes already:
    a note it answers is not extracted again here."""

    def __init__(self):
        self._lock = threading.Lock()
        self._nlp = None
        self._context = None
        self._recent: OrderedDict[str, list[Problem]] = OrderedDict()
        self._recent_lock = threading.Lock()
        self.ahead: Ahead | None = None

    def __call__(self, note: str) -> list[Problem]:
        """The problems of `note`; the last `RECENT` notes' are kept, so that a note read twice
        (verify's first pass, then its proposals) is read once."""
        with self._recent_lock:
            if note in self._recent:
                return self._recent[note]
        ahead = self.ahead
        found = ahead.problems(note) if ahead is not None else None
        found = found if found is not None else self.extract(note)
        with self._recent_lock:
            self._recent[note] = found
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        return found

    def extract(self, note: str) -> list[Problem]:
        """The problems of `note`, read here."""
        nlp, context = self._pipeline()
        doc = nlp(note)
        ranges = [item for item in sections(doc) if item[0] in PROBLEM_SECTIONS]
        found = [problem for section, start, end in ranges for problem in _section_problems(note, section, start, end)]
        if not found:
            found = [(section, "cue", *span) for section, start, end in ranges for span in _cued(note, start, end)]
        found = _unique(note, found)
        spans = []
        for section, form, start, end in found:
            entity = _entity(note, start, end)
            span = doc.char_span(entity[0], entity[1], label="PROBLEM", alignment_mode="expand")
            if span is not None and not any(span.start < other.end and other.start < span.end for other in spans):
                spans.append(span)
        doc.ents = spans
        context(doc)
        statuses = {(span.start_char, span.end_char): _assertion(span) for span in doc.ents}
        problems = []
        for section, form, start, end in found:
            entity = doc.char_span(*_entity(note, start, end), alignment_mode="expand")
            status = statuses.get((entity.start_char, entity.end_char), "present") if entity is not None else "present"
            body = next(((first, last) for _, first, last in ranges if first <= start < last), None)
            problems.append(Problem(note[start:end], Span(start, end, note[start:end]), section, status, form, body))
        return problems

    def preload(self) -> threading.Thread | None:
        """Starts loading medspaCy on a daemon thread, so that the first note finds it loaded
        or waits only for the rest (a failure to load is raised at that first note instead);
        None, loading nothing, while the notes are read ahead elsewhere."""
        if self.ahead is not None:
            return None
        thread = threading.Thread(target=self.load, name="icd-extractor-preload", daemon=True)
        thread.start()
        return thread

    def load(self) -> bool:
        """Loads medspaCy now if it is not loaded; False when it cannot be (the error is raised
        again where the pipeline is used)."""
        try:
            self._pipeline()
        except Exception:  # noqa: BLE001 - raised again where the pipeline is used
            return False
        return True

    def _pipeline(self):
        with self._lock:
            if self._nlp is None:
                with loading():
                    self._nlp, self._context = _load()
            return self._nlp, self._context


EXTRACTOR = ProblemExtractor()
"""The extractor the programs share (one medspaCy pipeline per process)."""


def sections(doc) -> list[tuple[str, int, int]]:
    """(category, start, end) character ranges of the note's section bodies; the whole note as
    one assessment when no title is found."""
    found = [
        (section.category, doc[section.title_start : section.title_end].end_char, _end_char(doc, section.body_end))
        for section in doc._.sections
        if section.category is not None
    ]
    if not found:
        return [("assessment", 0, len(doc.text))]
    return sorted(found, key=lambda item: item[1])


def _end_char(doc, token: int) -> int:
    return doc[token - 1].idx + len(doc[token - 1]) if token > 0 else 0


def _section_problems(note: str, section: str, start: int, end: int) -> list[tuple[str, str, int, int]]:
    """(section, form, start, end) of the problems listed in one section body."""
    body = note[start:end]
    found = []
    for line_start, line in _lines(body):
        item = ITEM.match(line)
        if item:
            marker = item.group("marker")
            if marker in "-*•·" and section == "plan":
                continue
            form = "numbered" if marker[0].isdigit() else "hash" if marker.startswith("#") else "bullet"
            span = _first_clause(note, start + line_start + item.end(), end)
        elif _is_heading(body, line_start, line):
            form, span = "heading", _first_clause(note, start + line_start, start + line_start + len(line))
        else:
            continue
        if span and _is_problem(note[span[0] : span[1]], strict=section == "plan"):
            found.append((section, form, *span))
    return found


def _lines(body: str):
    offset = 0
    for line in body.split("\n"):
        stripped = line.strip()
        if stripped:
            yield offset + line.index(stripped[0]), stripped
        offset += len(line) + 1


def _is_heading(body: str, line_start: int, line: str) -> bool:
    """A short line on its own (after a blank line or the section title) that reads as a
    problem, not a sentence."""
    before = body[:line_start].rstrip(" \t")
    if before and not before.endswith("\n\n") and before.strip():
        return False
    words = WORD.findall(line)
    if not words or len(words) > MAX_HEADING_WORDS or line.endswith(("?", "!", ",")):
        return False
    return not any(word.lower() in SENTENCE_WORDS for word in words)


def _first_clause(note: str, start: int, end: int) -> tuple[int, int] | None:
    """The item's first clause (to the first '.', ':' or ';'), after a 'Primary:' label, trimmed."""
    text = note[start:end]
    label = LABEL.match(text)
    if label and label.group("label").strip().lower().startswith(PRIMARY_LABELS):
        start, text = start + label.end(), text[label.end() :]
    elif label:
        return None if label.group("label").strip().lower() in NOT_PROBLEM_LABELS else _trim(note, start, start + label.start("label") + len(label.group("label")))
    stop = CLAUSE_END.search(text)
    return _trim(note, start, start + (stop.start() if stop else len(text)))


def _trim(note: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and not note[start].isalnum():
        start += 1
    while end > start and not note[end - 1].isalnum() and note[end - 1] != ")":
        end -= 1
    return (start, end) if end > start and end - start <= MAX_PROBLEM_CHARS else None


def _is_problem(text: str, strict: bool = False) -> bool:
    """Text that names a problem: words, not a label, not a sentence of the plan (`strict`: no
    sentence word at all; else not starting with one)."""
    words = [word.lower() for word in WORD.findall(text)]
    if not words or not any(word.isalpha() and len(word) > 1 for word in words) or words[0] in NOT_PROBLEM_LABELS:
        return False
    return not (set(words) & SENTENCE_WORDS if strict else words[0] in SENTENCE_WORDS)


def _cued(note: str, start: int, end: int) -> list[tuple[int, int]]:
    """Diagnoses named after a cue in the sentences of a section ('consistent with X')."""
    body = note[start:end].lower()
    spans = []
    for cue in DIAGNOSIS_CUES:
        for match in re.finditer(rf"\b{re.escape(cue)}\b\s+", body):
            rest = start + match.end()
            stop = re.search(r"[.,;:()]|\n|\b(?:and|which|that|but|so|as|for|more)\b", note[rest:end])
            trimmed = _trim(note, rest, rest + (stop.start() if stop else end - rest))
            if trimmed:
                words = WORD.findall(note[trimmed[0] : trimmed[1]])
                while words and words[0].lower() in LEADING_FILLER:
                    skip = note.lower().index(words[0].lower(), trimmed[0]) + len(words[0])
                    trimmed = _trim(note, skip, trimmed[1]) or trimmed
                    words = words[1:]
                if words:
                    spans.append(trimmed)
    return sorted(set(spans))


def _unique(note: str, found: list[tuple[str, str, int, int]]) -> list[tuple[str, str, int, int]]:
    """Each problem once (case and spacing ignored), where the note first writes it."""
    seen, unique = set(), []
    for item in sorted(found, key=lambda item: item[2]):
        key = " ".join(WORD.findall(note[item[2] : item[3]].lower()))
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def _entity(note: str, start: int, end: int) -> tuple[int, int]:
    """The condition inside a problem: leading assertion cues ('History of', 'Denies', 'Mother
    has') and fillers cut off, so ConText reads them as modifiers of what follows."""
    cues = sorted({cue for cue, _, direction in CONTEXT_CUES if direction == "FORWARD"}, key=len, reverse=True)
    changed = True
    while changed and start < end:
        changed = False
        lowered = note[start:end].lower()
        for cue in (*cues, *LEADING_FILLER):
            if lowered.startswith(cue) and (len(lowered) == len(cue) or not lowered[len(cue)].isalnum()):
                rest = start + len(cue)
                while rest < end and not note[rest].isalnum():
                    rest += 1
                if rest < end:
                    start, changed = rest, True
                break
    return start, end


def _assertion(span) -> str:
    """The status of the first ConText modifier outside the problem itself ('without macular
    edema' inside a diagnosis does not negate it)."""
    for modifier in span._.modifiers:
        start, end = modifier.modifier_span
        if span.start <= start < span.end:
            continue
        status = ASSERTIONS.get(modifier.category)
        if status:
            return status
    return "present"


def _line_sentences(doc):
    """Sentence starts after sentence punctuation and at every new line: a heading or a list item
    is a sentence of its own (PyRuSH finds the same boundaries in these notes at 30 times the cost)."""
    for i, token in enumerate(doc):
        if i == 0:
            token.is_sent_start = True
            continue
        previous = doc[i - 1]
        token.is_sent_start = "\n" in previous.text or (previous.text in SENTENCE_PUNCT and not token.is_space)
    return doc


def _pattern(title: str) -> list[dict[str, str]] | None:
    """A token pattern for a title or cue written with a slash or ampersand ('a/p', 'h/o'), which
    the tokenizer splits; None (a phrase match, case ignored) for the others."""
    parts = re.findall(r"[a-z]+|[/&]", title)
    if not set(parts) & {"/", "&"}:
        return None
    return [{"LOWER": part} for part in parts]


MEDSPACY_TOKENIZER = "icd_medspacy_tokenizer"


def _medspacy_tokenizer():
    """medspaCy's clinical tokenizer (`medspacy.load(medspacy_enable=["medspacy_tokenizer"])`),
    made as the pipeline's own: medspaCy builds it in place of a blank English pipeline's
    tokenizer, built first for nothing (a third of the pipeline's load). It reads from that
    tokenizer only its token_match, the English defaults'."""
    from types import SimpleNamespace

    from medspacy.custom_tokenizer import create_medspacy_tokenizer

    def make(nlp):
        source = SimpleNamespace(Defaults=nlp.Defaults, vocab=nlp.vocab, tokenizer=SimpleNamespace(token_match=nlp.Defaults.token_match))
        return create_medspacy_tokenizer(source)

    return make


def _load():
    """medspaCy's clinical tokenizer, line-aware sentences and a Sectionizer with our titles;
    ConText with our cues, run separately once the problems are marked."""
    from loguru import logger

    logger.disable("PyRuSH")
    import medspacy  # noqa: F401 - registers medspaCy's components
    import spacy
    from medspacy.context import ConText, ConTextRule
    from medspacy.section_detection import SectionRule
    from spacy.language import Language
    from spacy.util import registry

    if "icd_line_sentences" not in Language.factories:
        Language.component("icd_line_sentences", func=_line_sentences)
    if MEDSPACY_TOKENIZER not in registry.tokenizers:
        registry.tokenizers.register(MEDSPACY_TOKENIZER, func=_medspacy_tokenizer)
    nlp = spacy.blank("en", config={"nlp": {"tokenizer": {"@tokenizers": MEDSPACY_TOKENIZER}}})
    nlp.add_pipe("icd_line_sentences")
    sectionizer = nlp.add_pipe("medspacy_sectionizer", config={"rules": None, "require_start_line": True})
    sectionizer.add([
        SectionRule(literal=title, category=category, pattern=_pattern(title))
        for category, titles in SECTION_TITLES.items()
        for title in titles
    ])
    context = ConText(nlp, rules=None)
    context.add([
        ConTextRule(literal=cue, category=category, direction=direction, pattern=_pattern(cue))
        for cue, category, direction in CONTEXT_CUES
    ])
    return nlp, context
