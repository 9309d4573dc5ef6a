"""Trajectories built from gold codes without an LM, the way a coder works: read the statement
that documents a diagnosis, look it up in the alphabetic index (or search, then open the
category, when the index does not reach it), open the code in the tabular list with its notes,
check its Excludes1 and pairing notes against the note's other codes, settle the code quoting
the evidence. Every tool result is the knowledge base's real answer (`icd_graph.tools.call`).

The evidence of a gold code is, in this order: its MDACE span; its gold mention as the note
writes it; else the sentence holding most words of its title and of the conditions its index
entries name (`documented`), narrowed to those words. An external cause the note does not name
that way is placed at the note's other external cause (`circumstance`); a gold code the release
does not bill is completed to its billable code closest to the evidence. Without the note text
(MDACE without MIMIC-III), only offsets are written and the look-ups use the code's title.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from data.chat import Say, chat_record
from data.records import NoteRecord
from icd_graph.codes import referenced
from icd_graph.tools import ToolCall, call
from icd_graph.vocabulary import tokenize
from programs.demos import GENERIC, SENTENCE_END
from programs.guarantees import best_billable
from programs.spans import locate
from optimizers.metrics import code_f1

CODER_SYSTEM = (
    "You are a certified ICD-10-CM coder. For each diagnosis the clinical note documents: read the statement, "
    "look the condition up in the Alphabetic Index (index_lookup; search the classification when the index does "
    "not reach it), open the code in the Tabular List with its notes (show) and check its Excludes1 and 'code "
    "first' / 'use additional code' / 'code also' notes against the note's other conditions, then settle on a "
    "billable code, quoting the words of the note that document it. Answer with JSON: "
    '{"codes": [{"code": ..., "description": ..., "evidence": [{"start": ..., "end": ..., "text": ...}]}]}, '
    "offsets being character offsets into the note."
)
OFFSETS_USER = (
    "Code MIMIC-III note {id}. Its text is not included (MIMIC-III may not be redistributed): take it from "
    "NOTEEVENTS.csv, ROW_ID {id}. Evidence is given as character offsets into that text."
)
PAIRING = {"use_additional_code": "use additional code", "code_first": "code first", "code_also": "code also"}
SEARCH_K = 20
MAX_COMPLETIONS = 20
EXPAND_LIMIT = 100
MAX_STATEMENT_CHARS = 300
BOUNDARY = re.compile(r"[.!?\n]")
WORD = re.compile(r"[A-Za-z0-9]+")
EXTERNAL_CAUSES = "VWXY"
SIDES = "left right bilateral unilateral"
# Words of notes read as the index's words: past tenses and participles ('he fell', 'a torn
# meniscus') and organs named by their adjective ('ovarian mass' -> 'Neoplasm, ovary').
WORD_FORMS = {
    "fell": "fall", "fallen": "fall", "struck": "strike", "hit": "strike", "torn": "tear", "bit": "bite",
    "bitten": "bite", "broke": "break", "broken": "break",
    "ovarian": "ovary", "uterine": "uterus", "gastric": "stomach", "pulmonary": "lung", "cerebral": "brain",
    "prostatic": "prostate", "pancreatic": "pancreas", "splenic": "spleen", "cutaneous": "skin", "ocular": "eye",
    "esophageal": "esophagus", "rectal": "rectum", "colonic": "colon", "mammary": "breast", "testicular": "testis",
}
_FORM = re.compile(r"\b(?:" + "|".join(WORD_FORMS) + r")\b", re.IGNORECASE)
# Words too common in titles and index paths to tell where a condition is documented.
WEAK = " ".join([*GENERIC, "disease diseased disorder condition syndrome specified unspecified nec nos site initial",
                 "encounter subsequent sequela type part cause non external occurrence place"])


@dataclass(frozen=True)
class GoldEvidence:
    """Where a gold code (`label`) is documented: a phrase to look up, its offsets, and the
    statement around it (None without the note text). `code` is the billable code to settle:
    the label, or for a label the release does not bill (a category such as R51) its billable
    code closest to the evidence."""

    label: str
    code: str
    phrase: str
    start: int | None
    end: int | None
    text: str | None
    statement: str | None


@dataclass
class GoldWalk:
    """One note's trajectory: the steps, the gold codes settled with their evidence, the route
    to each and the gold codes left out with the reason."""

    steps: list = field(default_factory=list)
    settled: list[GoldEvidence] = field(default_factory=list)
    routes: dict[str, str] = field(default_factory=dict)
    missed: dict[str, str] = field(default_factory=dict)


def walk_note(record: NoteRecord, kb, with_text: bool = True) -> GoldWalk:
    """The trajectory of one note over its gold codes that the release has, in note order."""
    walk = GoldWalk()
    found, undocumented = [], []
    for label in record.codes:
        info = kb.get(label)
        evidence = gold_evidence(record, label, kb, with_text) if info else None
        if info is None:
            walk.missed[label] = "not a code of the release"
        elif evidence is None:
            undocumented.append(label)
        else:
            found.append(evidence)
    circumstances = next((e for e in found if e.code[0] in EXTERNAL_CAUSES), None)
    for label in undocumented:
        if circumstances is not None and label[0] in EXTERNAL_CAUSES:
            found.append(circumstance(kb, label, circumstances))
        else:
            walk.missed[label] = "no evidence found in the note"
    found.sort(key=lambda e: (e.start if e.start is not None else -1, e.code))
    others = [e.code for e in found]
    for evidence in found:
        steps = []
        route = reach(kb, evidence, steps)
        if route is None:
            walk.missed[evidence.label] = "not reached through the index or search"
            continue
        check_notes(kb, evidence.code, [c for c in others if c != evidence.code], steps)
        description = kb.require(evidence.code).description
        if evidence.code != evidence.label:
            steps.append(Say(f"{evidence.label} is a category of the release, not a billable code; {evidence.code} "
                             "is its code that fits the note."))
        quoted = f'quoting "{evidence.text}"' if evidence.text else f"at characters {evidence.start}-{evidence.end}"
        steps.append(Say(f"{evidence.code} ({description}) is settled, {quoted}."))
        walk.steps.extend(steps)
        walk.settled.append(evidence)
        walk.routes[evidence.label] = route if evidence.code == evidence.label else "completed"
    walk.steps = once(walk.steps)
    return walk


def once(steps: list) -> list:
    """The steps without a tool call already made with the same arguments (its answer is known)."""
    made, kept = set(), []
    for step in steps:
        if isinstance(step, ToolCall):
            key = json.dumps([step.name, step.arguments], sort_keys=True)
            if key in made:
                continue
            made.add(key)
        kept.append(step)
    return kept


# -- evidence ----------------------------------------------------------------------------


def gold_evidence(record: NoteRecord, label: str, kb, with_text: bool) -> GoldEvidence | None:
    """The span that documents the gold code `label` in the note (see the module docstring),
    with the billable code to settle, or None."""
    info = kb.require(label)
    billable = [info.code] if info.billable else kb.complete(info.code)[:MAX_COMPLETIONS]
    if not billable:
        return None
    found = _span(record, label, info.description, billable, kb, with_text)
    if found is None:
        return None
    phrase, start, end = found
    text = record.text[start:end] if with_text else None
    around = statement(record.text, start, end) if with_text else None
    code = billable[0] if len(billable) == 1 else best_billable(kb, info.code, f"{phrase} {around or ''}")
    return GoldEvidence(label, code, phrase, start, end, text, around)


def circumstance(kb, label: str, sibling: GoldEvidence) -> GoldEvidence:
    """An external cause the note does not name in the index's words ('stepped off a curb' for
    W18.49XA, stumbling without falling), placed where the note's other external cause is
    documented: the circumstances of the injury."""
    info = kb.require(label)
    billable = [info.code] if info.billable else kb.complete(info.code)[:MAX_COMPLETIONS]
    code = billable[0] if len(billable) == 1 else best_billable(kb, info.code, f"{sibling.phrase} {sibling.statement or ''}")
    return GoldEvidence(label, code, sibling.phrase, sibling.start, sibling.end, sibling.text, sibling.statement)


def _span(record: NoteRecord, label: str, description: str, billable: list[str], kb, with_text: bool):
    """(phrase, start, end) documenting `label`: its first MDACE span, its mention, or the
    words `documented` finds; without the text, an MDACE span with the title as the phrase."""
    spans = sorted((e for e in record.evidence if e.code == label), key=lambda e: e.start)
    if spans:
        first = spans[0]
        phrase = " ".join(record.text[first.start : first.end].split()) if with_text else description
        return phrase, first.start, first.end
    if not with_text:
        return None
    for mention in record.mentions:
        if mention.code == label:
            found = locate(record.text, mention.phrase).span
            if found:
                return mention.phrase, found.start, found.end
    paths = [path for code in billable for path in kb.index_paths(code)]
    found = documented(record.text, list(dict.fromkeys(paths)), description)
    if found is None:
        return None
    start, end = found
    return " ".join(record.text[start:end].split()), start, end


def documented(note: str, index_paths: list[str], description: str) -> tuple[int, int] | None:
    """Offsets of the words of the note that document a code, read in the words its title and
    index entries use: among the sentences holding a telling word of the title or of the
    conditions the entries name (the first telling part of each path: 'carpal tunnel' of
    'Syndrome, carpal tunnel'; a side alone tells nothing), or two words of the entries ('sore
    throat'), the one with most telling words, then most words of the entries, the later on
    ties (the assessment comes last); narrowed to the words it shares with them."""
    weak = _roots(WEAK)
    key = (_roots(description) | {word for path in index_paths for word in _condition(path)}) - weak - _roots(SIDES)
    wanted = key | ((_roots(description) | {word for path in index_paths for word in _roots(path)}) - weak)
    best, best_score = None, (0, 1)
    for start, end in sentence_spans(note):
        words = [(s, e, _roots(word)) for s, e, word in _words(note, start, end)]
        found = set().union(*(stems for _, _, stems in words))
        score = (len(found & key), len(found & wanted))
        if (score[0] or score[1] >= 2) and score >= best_score:
            best, best_score = (start, end, words), score
    if best is None:
        return None
    start, end, words = best
    return narrowed(start, end, [(s, e, stems & wanted) for s, e, stems in words])


def _condition(path: str) -> set[str]:
    """The words of the first part of an index path that says more than 'Disease' or 'Syndrome'."""
    for part in path.split(","):
        words = _roots(part) - _roots(WEAK)
        if words:
            return words
    return set()


@cache
def _roots(text: str) -> frozenset[str]:
    """The tokens of `text` (`WORD_FORMS` read first) without -ing / -ed endings: 'slipped',
    'slipping' -> 'slip'; 'fell' -> 'fall'; 'ovarian' -> 'ovary'."""
    roots = set()
    for word in tokenize(_FORM.sub(lambda match: WORD_FORMS[match.group().lower()], text)):
        for suffix in ("ing", "ed"):
            if word.endswith(suffix) and len(word) - len(suffix) >= 3:
                word = word[: -len(suffix)]
                if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "aeiouls":
                    word = word[:-1]
                break
        roots.add(word)
    return frozenset(roots)


def sentence_spans(note: str):
    """(start, end) of each sentence or heading of the note, split as `programs.demos.sentences` does."""
    start = 0
    for match in [*SENTENCE_END.finditer(note), None]:
        end = match.start() if match else len(note)
        text = note[start:end]
        if len(text.strip()) > 2:
            yield start + len(text) - len(text.lstrip()), start + len(text.rstrip())
        if match:
            start = match.end()


def _words(note: str, start: int, end: int) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in WORD.finditer(note, start, end)]


def narrowed(start: int, end: int, words: list[tuple[int, int, set[str]]]) -> tuple[int, int]:
    """The shortest stretch of the (start, end, matched stems) words holding every matched stem
    (start, end when none matched)."""
    hits = [(s, e, stems) for s, e, stems in words if stems]
    need = set().union(*(stems for _, _, stems in hits))
    if not need:
        return start, end
    best = (start, end)
    for i, (s, _, _) in enumerate(hits):
        seen: set[str] = set()
        for _, e, stems in hits[i:]:
            seen |= stems
            if seen == need:
                if e - s < best[1] - best[0]:
                    best = (s, e)
                break
    return best


def statement(note: str, start: int, end: int) -> str:
    """The sentence (or line) of the note around note[start:end], on one line."""
    left = max((m.end() for m in BOUNDARY.finditer(note, 0, start)), default=0)
    match = BOUNDARY.search(note, end)
    right = match.end() if match else len(note)
    return " ".join(note[left:right].split())[:MAX_STATEMENT_CHARS]


# -- the walk ----------------------------------------------------------------------------


def reach(kb, evidence: GoldEvidence, steps: list) -> str | None:
    """Tool calls (and remarks) that reach the gold code, added to `steps`: 'index', 'search' or
    'category' for the route taken, None when none reaches it (`steps` then unchanged)."""
    code, phrase = evidence.code, evidence.phrase
    read = (f'The note says "{evidence.statement}": {phrase}.' if evidence.statement
            else f"Characters {evidence.start}-{evidence.end} of the note document {phrase.lower()}.")
    attempts = index_attempts(evidence, kb.index_paths(code))
    first = _tool(kb, "index_lookup", attempts[0])
    for arguments in attempts:
        result = first if arguments == attempts[0] else _tool(kb, "index_lookup", arguments)
        entry = next((e for e in result.result if code in e["billable_codes"]), None)
        if entry is None:
            continue
        steps.extend([Say(f"{read} Look up '{phrase}' in the Alphabetic Index."), first])
        if arguments != attempts[0]:
            where = " in the External Cause Index" if arguments.get("index") == "eindex" else ""
            steps.extend([Say(f"No entry there fits; look under the main term '{arguments['terms'][0]}'{where}."), result])
        steps.extend(complete(kb, entry, code))
        return "index"
    hits = _tool(kb, "search", {"query": phrase, "k": SEARCH_K})
    if any(hit["code"] == code for hit in hits.result):
        rank = next(i for i, hit in enumerate(hits.result, 1) if hit["code"] == code)
        steps.extend([Say(f"{read} Look it up in the Alphabetic Index."), first,
                      Say("The index does not reach it; search the classification."), hits,
                      Say(f"{code} is hit {rank}; open it in the Tabular List.")])
        return "search"
    for ancestor in kb.expand(code, "ancestors"):
        if ancestor.kind in ("chapter", "block"):
            break
        near = next((hit["code"] for hit in hits.result if hit["code"].startswith(ancestor.code)), None)
        if near is None:
            continue
        opened = _tool(kb, "expand", {"code": ancestor.code, "kind": "billable", "limit": EXPAND_LIMIT})
        if not any(item["code"] == code for item in opened.result["codes"]):
            return None
        steps.extend([Say(f"{read} Look it up in the Alphabetic Index."), first,
                      Say("The index does not reach it; search the classification."), hits,
                      Say(f"{near} is close; list the billable codes of {ancestor.code} ({ancestor.description})."), opened,
                      Say(f"{code} is the one documented; open it in the Tabular List.")])
        return "category"
    return None


def complete(kb, entry: dict, code: str) -> list:
    """From the index entry to the billable gold code: at once when printed in full, else by
    validating the printed code (its completions) or listing its billable codes."""
    printed, path = entry["code"], entry["path"]
    if printed == code:
        return [Say(f"The entry '{path}' gives {code}; open it in the Tabular List.")]
    stem = (printed or "").rstrip("-").rstrip(".")
    steps: list = [Say(f"The entry '{path}' gives {printed}, not a billable code as printed; complete it.")]
    check = _tool(kb, "validate", {"code": stem})
    if code in check.result["completions"]:
        steps.append(check)
    else:
        listed = _tool(kb, "expand", {"code": stem, "kind": "billable", "limit": EXPAND_LIMIT})
        if not any(item["code"] == code for item in listed.result.get("codes", ())):
            return [Say(f"The entry '{path}' lists {code} among its billable codes; open it in the Tabular List.")]
        steps.append(listed)
    return [*steps, Say(f"Of its billable codes, {code} is the one documented: open it in the Tabular List.")]


def index_attempts(evidence: GoldEvidence, index_paths: list[str]) -> list[dict]:
    """index_lookup arguments to try: the phrase (the index picks the main term); each word of
    it, from the last, as the main term with the phrase as modifiers; then for each index entry
    of the code that shares a telling word with the statement ('fell' and 'Fall, falling'), its
    main term with the phrase, with the statement, and its path as printed. An external cause
    (V00-Y99) is also looked up in the External Cause Index alone, the same ways, then under
    the main term of each of its entries (the coder's reading of the circumstances: 'stepped
    off a curb' under 'Stumbling')."""
    phrase = evidence.phrase
    words = [w for w in WORD.findall(phrase) if len(w) > 2 and w.lower() not in GENERIC]
    terms = [[phrase], *([word.capitalize(), phrase] for word in reversed(words))]
    read = _roots(f"{phrase} {evidence.statement or ''}") - _roots(WEAK)
    for path in index_paths:
        parts = [part.strip() for part in path.split(",") if part.strip()]
        if _roots(path) & read:
            terms.extend([[parts[0], phrase], [parts[0], evidence.statement or phrase], parts])
    attempts = [{"terms": t} for t in terms]
    if evidence.code[0] in EXTERNAL_CAUSES:
        attempts.extend({"terms": t, "index": "eindex"} for t in terms)
        for path in index_paths:
            parts = [part.strip() for part in path.split(",") if part.strip()]
            attempts.extend({"terms": t, "index": "eindex"} for t in ([parts[0], phrase], parts))
    return [arguments for i, arguments in enumerate(attempts) if arguments not in attempts[:i]]


def check_notes(kb, code: str, others: list[str], steps: list) -> None:
    """Open `code` with its inherited notes and say which Excludes1 and pairing notes name the
    note's other codes."""
    shown = _tool(kb, "show", {"code": code})
    steps.append(shown)
    remarks = []
    for note in shown.result["notes"]:
        named = [other for other in others if referenced(note["text"], other)]
        if not named:
            continue
        if note["kind"] == "excludes1":
            remarks.append(f"its Excludes1 note '{note['text']}' names {', '.join(named)}, documented here as a separate condition")
        elif note["kind"] in PAIRING:
            remarks.append(f"its '{PAIRING[note['kind']]}' note ('{note['text']}') is answered by {', '.join(named)}")
    if remarks:
        steps.append(Say(f"For {code}, " + "; ".join(dict.fromkeys(remarks)) + "."))
    else:
        kinds = {note["kind"] for note in shown.result["notes"]}
        checked = [label for kind, label in (("excludes1", "Excludes1"), *PAIRING.items()) if kind in kinds]
        if checked:
            steps.append(Say(f"For {code}, its {' and '.join(checked)} notes name no other condition of this note."))
        else:
            steps.append(Say(f"{code} has no Excludes1 or pairing note to check."))


def _tool(kb, name: str, arguments: dict) -> ToolCall:
    return ToolCall(name, arguments, call(kb, name, arguments))


# -- the dataset ---------------------------------------------------------------------------


def gold_record(record: NoteRecord, kb, meta: dict, with_text: bool = True) -> tuple[dict, GoldWalk]:
    """The chat record of one note's gold trajectory (see `data.chat.chat_record`) and its walk."""
    walk = walk_note(record, kb, with_text)
    codes = [
        {"code": e.code, "description": kb.require(e.code).description,
         "evidence": [{"start": e.start, "end": e.end, "text": e.text or ""}]}
        for e in walk.settled
    ]
    user = f"Code this clinical note.\n\n{record.text}" if with_text else OFFSETS_USER.format(id=record.id)
    f1 = code_f1(record.codes, [c["code"] for c in codes])
    return chat_record(record.id, CODER_SYSTEM, user, walk.steps, codes, list(record.codes), f1, meta), walk


@dataclass
class GoldSummary:
    """Counts of a gold export: gold codes, those the release has (billable or not), the
    billable ones, those with a trajectory, by route, and the ones left out with why."""

    output: Path
    notes: int = 0
    written: int = 0
    rejected: list[tuple[str, float]] = field(default_factory=list)
    gold: int = 0
    in_release: int = 0
    billable: int = 0
    settled: int = 0
    routes: Counter = field(default_factory=Counter)
    missed: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def coverage(self) -> float:
        """Gold codes with a trajectory over the gold codes the release has."""
        return self.settled / self.in_release if self.in_release else 0.0

    def as_dict(self) -> dict:
        return {"output": str(self.output), "notes": self.notes, "written": self.written,
                "rejected": [{"id": i, "f1": f} for i, f in self.rejected], "gold_codes": self.gold, "in_release": self.in_release,
                "billable": self.billable, "settled": self.settled, "coverage": self.coverage, "routes": dict(self.routes),
                "missed": [{"id": i, "code": c, "reason": r} for i, c, r in self.missed]}


def write_gold(records: Iterable[NoteRecord], kb, output: Path, meta: dict, *, with_text: bool = True,
               min_f1: float | None = None, on_note: Callable[[str], None] | None = None) -> GoldSummary:
    """Writes one gold-trajectory record a note to `output` (replaced), except for notes whose
    F1 (the gold codes with a trajectory against all) is below `min_f1`, and counts them."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    summary = GoldSummary(output)
    partial = output.with_name(output.name + ".partial")
    with partial.open("w", encoding="utf-8") as sink:
        for record in records:
            line, walk = gold_record(record, kb, meta, with_text)
            if min_f1 is not None and line["f1"] < min_f1:
                summary.rejected.append((record.id, line["f1"]))
            else:
                sink.write(json.dumps(line, ensure_ascii=False) + "\n")
                summary.written += 1
            summary.notes += 1
            summary.gold += len(record.codes)
            infos = [kb.get(code) for code in record.codes]
            summary.in_release += sum(info is not None for info in infos)
            summary.billable += sum(bool(info and info.billable) for info in infos)
            summary.settled += len(walk.settled)
            summary.routes.update(walk.routes.values())
            summary.missed.extend((record.id, code, reason) for code, reason in walk.missed.items())
            if on_note:
                on_note(record.id)
    partial.replace(output)
    return summary
