"""What the three pipelines share: the knowledge base kept out of the DSPy state, stage calls
with a logged fallback on malformed LM output, and the result wrapped in a Prediction."""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable, Mapping
from typing import ClassVar

import dspy
from dspy.utils.exceptions import AdapterParseError

from icd_graph.vocabulary import tokenize
from programs.answers import Narrowing, outside
from programs.chunking import split_note
from programs.concurrency import in_order
from programs.decoding import CONSTRAINED, decoding
from programs.extractor import EXTRACTOR, Problem, ProblemExtractor
from programs.floor import MIN_QUALITY, as_written, certain, defining, keep_problem, words
from programs.problem_rules import NOT_CODED, NOT_PROBLEM_LABELS
from programs.guarantees import check_note
from programs.lenient import lenient_parse
from programs.result import Answer, CodedDiagnosis, CodingResult, Span, StageTrace
from programs.spans import locate

MAX_NOTE_CHARS = 12_000
PAST = ("history of", "personal history", "h/o", "hx of", "status post")
# Words that name no condition on their own: 'Disease', 'Medical problems'.
NO_CONDITION = frozenset(tokenize("disease disorder condition problem problems illness issue issues medical"))
# Where a statement's first sentence ends: 'Hyperlipidemia. Continue atorvastatin' is a plan after it.
SENTENCE_END = re.compile(r"\.\s+(?=[A-Z])")
STATUS = re.compile(r"present|historical|negated|possible|family|hypothetical", re.IGNORECASE)
# The status an LM copies from the listed problems (`listed_problems`), maybe numbered after it:
# 'Hepatomegaly (present)', 'Bitemporal hemianopia (present) (2)'.
LISTED_STATUS = re.compile(rf"(?:\s*\((?:{STATUS.pattern}|\d+)\))+\s*$", re.IGNORECASE)
SHARED = ("kb", "extractor")


def has_model() -> bool:
    """True when an LM is configured; without one (`--model none`) every stage is its rules."""
    return dspy.settings.lm is not None


class CodingProgram(dspy.Module):
    """A coding pipeline over a knowledge base. `forward(note)` returns a Prediction with
    `codes` (billable codes) and `result` (a CodingResult).

    The knowledge base, the problem extractor and settings are plain attributes, so DSPy's saved
    state holds only the predictors (demos and instructions) and copies made by optimizers share
    the same base and extractor.
    """

    name: ClassVar[str]
    kb_parts: ClassVar[tuple[str, ...]] = ("search",)
    """What the program queries that `KnowledgeBase.preload` can load ahead of the first note."""

    def __init__(self, kb, max_note_chars: int = MAX_NOTE_CHARS, extractor: ProblemExtractor | None = None):
        super().__init__()
        self.kb = kb
        self.max_note_chars = max_note_chars
        self.extractor = extractor or EXTRACTOR

    def __deepcopy__(self, memo):
        clone = self.__class__.__new__(self.__class__)
        memo[id(self)] = clone
        for key, value in self.__dict__.items():
            clone.__dict__[key] = value if key in SHARED else copy.deepcopy(value, memo)
        return clone

    def preload(self, batch: bool = False) -> list[threading.Thread]:
        """Starts loading, in the background, the extractor (unless it reads the notes ahead in
        a process of its own) and the parts of the knowledge base the program queries (see
        `KnowledgeBase.preload`), these once the extractor, which the first LM call waits for,
        is loaded. For a `batch`, the code hierarchy too: a note's descriptions and code look-ups
        are then read from memory, not queried (0.4 s once, about 13 ms less CPU a note)."""
        extractor = self.extractor.preload()
        searcher = self.kb.preload(self.kb_parts + (("hierarchy",) if batch else ()), after=extractor)
        return [searcher] if extractor is None else [extractor, searcher]

    def forward(self, note: str) -> dspy.Prediction:
        check_note(note)
        with dspy.track_usage() as usage:
            codes, trace = self.code_note(note)
        result = CodingResult(self.name, codes, trace, usage.get_total_tokens())
        return dspy.Prediction(codes=result.code_list, result=result)

    def code_note(self, note: str) -> tuple[list[CodedDiagnosis], list[StageTrace]]:
        raise NotImplementedError

    def block(self, code: str) -> str:
        """The block of categories a code is in ('M17.11' -> 'M15-M19'), or its chapter."""
        ancestors = [info.code for info in self.kb.expand(code, "ancestors")]
        return next((a for a in ancestors if "-" in a), ancestors[-1] if ancestors else code)

    def problems(self, note: str, trace: StageTrace) -> tuple[list[Problem], list[Problem]]:
        """(the problems to code, every problem) the rule-based extractor reads in the note; each
        one not coded is dropped in `trace` with the reason."""
        found = self.extractor(note)
        kept = []
        for problem in found:
            reason = keep_problem(problem)
            if reason:
                trace.drop(problem.text, f"{reason} ({problem.section})")
            else:
                kept.append(problem)
        trace.log.append(f"rules: {len(found)} problems in the note, {len(kept)} to code")
        return kept, found

    def parts(self, note: str, trace: StageTrace) -> list[str]:
        parts = split_note(note, self.max_note_chars)
        if len(parts) > 1:
            trace.log.append(f"note of {len(note)} characters read in {len(parts)} parts")
        return parts

    def read_pairs(
        self,
        predictor: dspy.Predict,
        note: str,
        trace: StageTrace,
        fields: tuple[str, str],
        noun: str,
        reject: Callable[[str, str], str | None] | None = None,
        narrow: Mapping[str, Narrowing] | None = None,
        **inputs,
    ) -> list[tuple[str, str]]:
        """The (item, companion) pairs `predictor` reads from every part of the note (the parts
        read concurrently, with the other `inputs`) in its two parallel output `fields`, each item
        once (case ignored); `reject(item, companion)` gives the reason to drop a pair, or None;
        `narrow` restricts fields of the answer (`run_stage`). All of it is logged in `trace`."""
        found: dict[str, tuple[str, str]] = {}

        def read(part: str) -> tuple[dspy.Prediction | None, StageTrace]:
            logged = StageTrace(trace.stage)
            return run_stage(predictor, logged, narrow, note=part, **inputs), logged

        for out, logged in in_order(read, self.parts(note, trace)):
            trace.extend(logged)
            if out is None:
                continue
            for item, companion in paired(getattr(out, fields[0]), getattr(out, fields[1])):
                trace.proposed.append(item)
                reason = reject(item, companion) if reject else None
                if reason is None and item.lower() in found:
                    reason = f"repeated {noun}"
                if reason:
                    trace.drop(item, reason)
                    continue
                found[item.lower()] = (item, companion)
                trace.kept.append(item)
        return list(found.values())


def naming_evidence(note: str, diagnosis: str, quote: str) -> str | None:
    """The evidence quote, or the diagnosis itself when the quote names none of its words and the
    note holds the diagnosis (small models pair a diagnosis with another line of the note); None
    when neither the quote nor the note names it (a diagnosis copied from a demo)."""
    wanted = set(tokenize(diagnosis))
    if not wanted or wanted & set(tokenize(quote)):
        return quote
    return diagnosis if locate(note, diagnosis).span else None


def listed_problems(problems: list[Problem]) -> list[str]:
    """The extractor's problems as an LM stage reads them: 'text (status)'."""
    return [f"{' '.join(problem.text.split())} ({problem.assertion})" for problem in problems]


def read_status(item: str) -> tuple[str, str]:
    """An LM's diagnosis or statement as the rules read a problem, and its status: its first
    sentence, up to an uncertain diagnosis it adds (`certain`), without the status it copied
    from the listed problems ('Hepatomegaly (present)' -> 'Hepatomegaly', 'present');
    'historical' for one written as past ('History of ...', 'Status post ...')."""
    listed = LISTED_STATUS.search(item)
    text = certain(SENTENCE_END.split(item[: listed.start()] if listed else item, 1)[0])
    copied = STATUS.search(listed.group()) if listed else None
    status = copied.group().lower() if copied else "present"
    return text, "historical" if status == "present" and text.lower().startswith(PAST) else status


def not_a_problem(text: str, status: str) -> str | None:
    """Why an LM's diagnosis or statement is not coded, as the rules would not code the problem
    (negated, possible, family or hypothetical; a label such as 'Medical Treatment'), or None."""
    if status in NOT_CODED:
        return f"{status}: not coded"
    if text.strip(" .:").lower() in NOT_PROBLEM_LABELS:
        return "a label of the note, not a problem"
    if not defining(text) - NO_CONDITION:
        return "names no condition"
    return None


def as_problems(pairs: list[tuple[str, str]], trace: StageTrace) -> list[tuple[str, str, str, bool]]:
    """(as the LM wrote it, as the rules read it, its companion, documented as past) for each of
    an LM's (item, companion) pairs that the rules would code (`read_status`, `not_a_problem`);
    the others are dropped in `trace`."""
    read = []
    for item, companion in pairs:
        text, status = read_status(item)
        if reason := not_a_problem(text, status):
            trace.drop(item, reason)
            trace.kept.remove(item)
        else:
            read.append((item, text, companion, status == "historical"))
    return read


def left_out(note: str, rules: list[tuple], spans: list[Span | None], read: list[tuple[str, str | Span]],
             trace: StageTrace) -> list[tuple]:
    """The rules' items whose problem (`spans`, one per item) the LM's (text, quote) pairs do
    not cover, by a quote overlapping it or a text with the same defining words: the problems
    the LM left out. They are coded too: a model adds to the rules' problems and refines them,
    it does not remove them."""
    quoted = [q if isinstance(q, Span) else locate(note, q).span for _, q in read]
    named = [defining(text) for text, _ in read]
    missed = []
    for item, span in zip(rules, spans):
        if span is None or any(span.overlaps(r) for r in quoted):
            continue
        words = defining(span.text)
        if words and any(n and (n <= words or words <= n) for n in named):
            continue
        trace.log.append(f"the LM left out the rules' problem {span.text!r}; it is coded too")
        missed.append(item)
    return missed


def evidence_missing(note: str, problems: list[Problem] = ()) -> Callable[[str, str], str | None]:
    """A `read_pairs` rejection: the pair's evidence quote is not in the note, or not where the
    rules read `problems` (`outside_sections`)."""

    def reject(item: str, quote: str) -> str | None:
        span = locate(note, quote).span
        return outside_sections(problems, span) if span else f"evidence {quote!r} not found in the note"

    return reject


def diagnosis_missing(note: str) -> Callable[[str, str], str | None]:
    """A `read_pairs` rejection for a diagnosis and its evidence: the quote is not in the note, or
    the diagnosis says what the note nowhere says ('type 2 diabetes mellitus with hyperglycemia'
    in a note without hyperglycemia: `nowhere_said`)."""
    said, missing = words(note), evidence_missing(note)

    def reject(diagnosis: str, quote: str) -> str | None:
        return missing(diagnosis, quote) or nowhere_said(read_status(diagnosis)[0], said)

    return reject


def statement_missing(note: str, problems: list[Problem]) -> Callable[[str, str], str | None]:
    """A `read_pairs` rejection for a statement that is its own evidence: the note does not hold
    it, holds it only loosely without `MIN_QUALITY` of its defining words (the note's 'Right knee
    sprain' for 'Right ankle sprain'), holds it outside where the rules read `problems`
    (`outside_sections`), or nowhere says some of its words (`nowhere_said`)."""
    said = words(note)

    def reject(statement: str, _: str) -> str | None:
        text = read_status(statement)[0]
        found = locate(note, text)
        if found.span is None:
            return f"evidence {text!r} not found in the note"
        wanted = defining(text)
        if found.match == "fuzzy" and len(wanted & words(found.span.text)) < MIN_QUALITY * len(wanted):
            return f"the note says {found.span.text!r}, not {text!r}"
        return outside_sections(problems, found.span) or nowhere_said(text, said)

    return reject


def outside_sections(problems: list[Problem], span: Span | None) -> str | None:
    """Why a quote at `span` is not read as a problem: it lies outside the sections the rules read
    `problems` in (assessment and plan: the bodies of theirs), as a past history, a family
    history or a review of systems does; None inside one, or when the rules found none."""
    bodies = {problem.body for problem in problems if problem.body}
    if span is None or not bodies or any(start <= span.start < end for start, end in bodies):
        return None
    return "outside the sections the rules read problems in (assessment, plan)"


def nowhere_said(text: str, said: set[str]) -> str | None:
    """Why a diagnosis is not the note's: the defining words of `text` that none of the note's
    words (`said`) are, as `text` writes them; None when the note says them all."""
    missing = defining(text) - said
    if not missing:
        return None
    return f"the note nowhere says {' '.join(as_written(text, missing))!r}"


def run_stage(predictor: dspy.Predict, trace: StageTrace, narrow: Mapping[str, Narrowing] | None = None,
              **inputs) -> dspy.Prediction | None:
    """The predictor's output, decoded under its answer schema with the `narrow`ed fields
    (programs.decoding) when the model can be constrained. When DSPy's adapters cannot parse the
    LM's answer, what a lenient reading finds in it; None (logged in `trace`) when that is
    nothing either, and the caller then applies the stage's fallback. The path that produced
    the answer is recorded in `trace.answers`."""
    with decoding(predictor, narrow) as (mode, decoded, config):
        try:
            out = predictor(**inputs, **({"config": config} if config else {}))
            path = mode if mode in CONSTRAINED else "json-retry" if decoded.parse_failures else "chat"
        except AdapterParseError as exc:
            outputs = lenient_parse(predictor.signature, exc.lm_response)
            if any(outputs.values()):
                trace.log.append(f"LM output not in the expected format ({_first_line(exc)}); read leniently")
                out, path = dspy.Prediction(**outputs), "lenient"
            else:
                trace.log.append(f"unparseable LM output ({_first_line(exc)}); stage fallback used")
                out, path = None, "unparsed"
    trace.answers.append(Answer(path, outside(narrow, out) if out is not None else 0, decoded.overrides))
    return out


def paired(first: list[str] | None, second: list[str] | None) -> list[tuple[str, str]]:
    """Zip two parallel LM lists; a missing second item repeats the first."""
    second = [str(item).strip() for item in second or []]
    pairs = []
    for i, item in enumerate(first or []):
        item = str(item).strip()
        if item:
            pairs.append((item, second[i] if i < len(second) and second[i] else item))
    return pairs


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else exc.__class__.__name__
