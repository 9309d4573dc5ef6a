"""The deterministic twins of the LM stages: which problems to code, which candidate code to
choose for a problem, and when no candidate is good enough. They run alone with `--model none`
and give every LM stage the answer it refines."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from icd_graph.records import SearchHit
from icd_graph.vocabulary import tokenize
from programs.extractor import Problem
from programs.problem_rules import NOT_CODED

# Words of a problem that say how it is, not what it is: a code need not name them.
QUALIFIERS = frozenset(
    tokenize(
        """above goal below goal uncontrolled controlled well stable worsening improving improved new newly
        diagnosed chronic acute recurrent mild moderate severe exacerbation flare follow up followup visit
        management bmi presentation mixed setting likely known ongoing persistent continued status
        community acquired"""
    )
)
DIABETES_TYPE = re.compile(r"\b(?:type\s*(?:1|2|i|ii|one|two)|t[12]dm|dm\s*[12]|dm(?:ii|i))\b", re.I)
# Personal-history and status codes, and I25.2 'Old myocardial infarction' (the index's 'History,
# personal, myocardial infarction').
PERSONAL_HISTORY = ("Z85", "Z86", "Z87", "Z91", "Z92", "Z95", "Z96", "Z97", "Z98", "Z94", "Z93", "Z89", "Z90", "I25.2")
WITHOUT = re.compile(r"\bwithout ([a-z]+(?: [a-z]+)?)")
# What a code's description says by default: no site or type, an injury's active treatment.
DEFAULTS = frozenset(tokenize("unspecified initial encounter"))
# 'Left shoulder pain, likely rotator cuff tendinopathy': an outpatient coder codes the documented
# symptom, not the uncertain diagnosis after it.
UNCERTAIN_TAIL = re.compile(
    r",?\s+(?:(?:most\s+)?likely|possibl[ey]|probabl[ey]|suspicious for|suspected|concerning for|consistent with|"
    r"rule out|r/o|versus|vs\.?)\b.*$", re.I)
MIN_QUALITY = 0.75
# What an LM's choice must name of a problem when the rules have no choice: less than the rules
# need, so a model can code a combination the rules cannot ('Type 2 diabetes mellitus with foot
# ulcer of the right great toe, limited to breakdown of skin': E11.621 names 6 of its 12 defining
# words), but half of it, not a code that shares a word or two with it (E01.2 'Iodine-deficiency
# related goiter' for 'Hypothyroidism'; Z98.84 'Bariatric surgery status' for 'Status post cataract
# surgery'). Tuned on train and dev (compiled CLH with the local model: 30% -> 50% took dev from
# .679 to .688; 60% gave .689).
LM_MIN_QUALITY = 0.5
# What a note must say of the words a paired code adds to the code whose note asks for it: I50's
# 'code first' note names I11.0 'Hypertensive heart disease with heart failure', which a heart
# failure alone does not document; 'foot ulcer of the right great toe, limited to breakdown of
# skin' documents L97.511 '... of other part of right foot limited to breakdown of skin'.
PAIRED_SAID = 0.5
CANDIDATES = 10
TOP = 5


@dataclass(frozen=True)
class Choice:
    """The candidate chosen for a query (None: no candidate fits) and why."""

    code: str | None
    reason: str
    quality: float = 0.0


def keep_problem(problem: Problem) -> str | None:
    """Why a problem is not coded (negated, possible, family or hypothetical), or None."""
    if problem.assertion in NOT_CODED:
        return f"{problem.assertion}: not coded"
    return None


def problem_query(problem: Problem, problems: list[Problem]) -> str:
    """What to search for a problem: its text up to an uncertain diagnosis it adds, with the diabetes type the note documents when the
    problem is a diabetic complication that does not name it ('Diabetic polyneuropathy' with
    'Type 2 diabetes' elsewhere -> type 2)."""
    text = certain(problem.text)
    if re.search(r"\bdiabetic\b", text, re.I) and not DIABETES_TYPE.search(text):
        for other in problems:
            found = DIABETES_TYPE.search(other.text)
            if found and re.search(r"\bdiabet", other.text, re.I):
                return f"{text}, {found.group()} diabetes"
    return text


def certain(text: str) -> str:
    """A problem's text up to an uncertain diagnosis it adds (`UNCERTAIN_TAIL`)."""
    return UNCERTAIN_TAIL.sub("", " ".join(text.split()))


def words(text: str) -> set[str]:
    return set(tokenize(text))


def quality(query: str, hit: SearchHit) -> float:
    """Share of the query's defining words (qualifiers and numbers aside: 'Obesity, BMI 31' is
    defined by 'obesity') that the hit's matched index path or description holds; a hit that
    says 'with' what the query says 'without' scores 0."""
    return naming(query, hit.description, hit.matched)


def defining(text: str, digits: bool = False) -> set[str]:
    """The words that say what a problem is: qualifiers and numbers aside ('Obesity, BMI 31' is
    defined by 'obesity'; with `digits`, a single digit stays: 'type 2', 'stage 3'), or all its
    words when that leaves none."""
    kept = {word for word in words(text) - QUALIFIERS if not word.isdigit() or (digits and len(word) == 1)}
    return kept or words(text)


def naming(query: str, description: str, path: str = "", digits: bool = False) -> float:
    """`quality` of a code's description and the index path that reached it."""
    wanted = defining(query, digits)
    if not wanted:
        return 0.0
    described = description.lower()
    for absent in WITHOUT.findall(query.lower()):
        if f"with {absent}" in described and f"without {absent}" not in described:
            return 0.0
    return len(wanted & (words(path) | words(description))) / len(wanted)


def vetted(query: str, rule: str | None, pick: str | None, described: dict[str, str],
           block: Callable[[str], str] | None = None, historical: bool = False) -> str | None:
    """Why an LM's `pick` for `query` gives way to the rules' choice `rule`, or None when it
    stands. A pick other than the rules' must name as much of the problem's defining words (in
    its description or index path: `described`) as the rules' choice does, up to `MIN_QUALITY`
    (`LM_MIN_QUALITY` when the rules have none), and at least one of them ('Bitemporal
    hemianopia': H53.47 'Heteronymous bilateral field defects', whose index path names it, may
    not become H53.11 'Day blindness'), and, given `block` (a code's block of categories), stay in the block of the
    rules' choice: a model refines the floor's choice (its specificity, a sibling, a cousin), it
    does not replace it with a guess ('Arthritis': M19.90 may not become A02.23 'Salmonella
    arthritis'), nor assert more the problem does not say than the rules' choice does (M19.90 may
    not become M19.022 'Primary osteoarthritis, left elbow'; 'Type 2 diabetes': E11.9 may not
    become E10.8 'Type 1 ...', since single digits count here), or, when the rules have none,
    than the candidate of `described` that asserts least ('Right index finger contusion': not
    S60.022A 'left', nor S60.021D 'subsequent encounter', beside S60.021A). A past problem
    (`historical`) takes only a personal-history or status code, as the rules' choice does."""
    if pick is None or pick == rule:
        return None
    if historical and not pick.startswith(PERSONAL_HISTORY):
        return f"the LM's {pick} codes {query!r} as current, but the note documents it as past; the rules' {rule or 'no code'} stands"

    def named(code: str) -> float:
        return naming(query, described.get(code, ""), digits=True)

    bar = LM_MIN_QUALITY if rule is None else min(named(rule), MIN_QUALITY)
    share = named(pick)
    if share < bar or not share:
        return f"the LM's {pick} names too little of {query!r}; the rules' {rule or 'no code'} stands"
    if block is not None and rule is not None and block(pick) != block(rule):
        return f"the LM's {pick} leaves the block of the rules' {rule} ({block(rule)}); the rules' choice stands"
    asserted = unsaid(query, described.get(pick, ""))
    if rule is None:
        least, than = min(len(unsaid(query, text)) for text in described.values()), "another candidate; the rules' no code"
    else:
        least, than = len(unsaid(query, described.get(rule, ""))), f"the rules' {rule}; the rules' choice"
    if len(asserted) > least:
        return f"the LM's {pick} says more that {query!r} does not ({', '.join(sorted(asserted))}) than {than} stands"
    return None


def unsaid(query: str, description: str) -> set[str]:
    """The defining words a code's description asserts that the problem does not say (what a
    'without ...' clause names, 'unspecified' and an initial encounter, the 7th character of
    active treatment, assert nothing: a subsequent encounter or a sequela needs the note's word)."""
    return defining(WITHOUT.sub(" ", description.lower()), digits=True) - defining(query, digits=True) - DEFAULTS


def paired_unsaid(note: str, description: str, asking: list[str]) -> list[str]:
    """The words of a paired code's `description`, as it writes them, that it adds to the
    descriptions of the codes whose notes ask for it (`asking`) and the note does not say, when
    they are more than `PAIRED_SAID` of what it adds; otherwise none: the note documents it."""
    added = unsaid(" ".join(asking), description)
    missing = added - words(note)
    if not added or len(missing) <= (1 - PAIRED_SAID) * len(added):
        return []
    return as_written(description, missing)


def as_written(text: str, stems: set[str]) -> list[str]:
    """The words of `text` whose stems are among `stems`, as `text` writes them, once each."""
    return list(dict.fromkeys(word for word in re.findall(r"[A-Za-z0-9]+", text) if words(word) & stems))


def best_entry(statement: str, paths: list[str | None]) -> int:
    """The 1-based index entry (None: an entry without codes) whose path names most of the
    statement's defining words, with fewest words the statement does not name; 0 when none has
    codes."""
    wanted = (words(statement) - QUALIFIERS) or words(statement)
    ranked = [
        (len(wanted & words(path)), -len(words(path) - wanted), -i, i)
        for i, path in enumerate(paths, 1)
        if path is not None
    ]
    return max(ranked)[-1] if ranked else 0


def choose(query: str, hits: list[SearchHit], historical: bool = False, min_quality: float = MIN_QUALITY) -> Choice:
    """Among the first `TOP` hits, the one that names most of the problem (an exact index or
    tabular match names all of it), search order breaking ties; a past problem takes only a
    personal-history or status code. None when no hit names `min_quality` of it (a plan
    sentence, a heading that names no condition)."""
    scored = []
    for rank, hit in enumerate(hits[:TOP]):
        if historical and not hit.code.startswith(PERSONAL_HISTORY):
            continue
        exact = hit.source.split("+")[0] == "exact"
        scored.append((1.0 if exact else quality(query, hit), -rank, exact, hit))
    if not scored:
        return Choice(None, "documented as past, and no personal-history or status code fits")
    score, _, exact, hit = max(scored, key=lambda item: item[:2])
    if score < min_quality:
        return Choice(None, f"no candidate names enough of the problem (best {score:.0%}: {hit.code})", score)
    how = "exact index match" if exact else f"names {score:.0%} of the problem's words"
    return Choice(hit.code, f"{how} ({hit.matched or hit.description})", score)
