"""The problem extractor's rules as data: section titles, how a problem line looks, and the
assertion cues of ConText. Each table has the test that shows it earns its place
(tests/programs/test_extractor.py)."""

from __future__ import annotations

# Section titles (matched at the start of a line, case ignored) -> section category.
SECTION_TITLES: dict[str, tuple[str, ...]] = {
    "assessment": (
        "assessment and plan", "assessment & plan", "assessment/plan", "a/p", "a&p", "assessment",
        "impression and plan", "impression", "diagnoses", "diagnosis", "discharge diagnoses", "discharge diagnosis",
        "final diagnoses", "final diagnosis", "primary diagnosis", "secondary diagnoses", "secondary diagnosis",
        "principal diagnosis", "problem list", "active problems", "postoperative diagnosis", "preoperative diagnosis",
    ),
    "plan": ("plan", "plan of care", "recommendations"),
    "chief_complaint": ("chief complaint", "cc", "reason for visit", "reason for admission"),
    "history_of_present_illness": ("history of present illness", "hpi", "brief hospital course", "hospital course"),
    "past_medical_history": (
        "past medical history", "medical history", "past history", "pmh", "surgical history", "past surgical history",
    ),
    "family_history": ("family history",),
    "social_history": ("social history",),
    "review_of_systems": ("review of systems", "ros"),
    "physical_exam": ("physical exam", "physical examination", "exam", "examination", "vitals", "vitals reviewed", "vital signs"),
    "results": ("results", "labs", "imaging", "pertinent results"),
    "medications": ("medications", "current medications", "discharge medications", "medications on admission", "allergies"),
    "instructions": ("instructions", "discharge instructions", "patient instructions", "followup instructions", "procedure"),
}

# Sections whose lines are the encounter's problems; in `plan` only heading lines count (ACI-BENCH
# writes its problems as headings there), and bullets only in the others.
PROBLEM_SECTIONS = ("assessment", "plan")

# A problem line's leading label that is not a problem ('Medical Reasoning: ...' under a heading).
NOT_PROBLEM_LABELS = (
    "medical reasoning", "medical treatment", "additional testing", "patient education and counseling",
    "patient education", "patient agreements", "counseling", "plan", "follow up", "follow-up", "disposition",
    "recommendations", "instructions", "note", "medications", "treatment", "specialist referrals", "referrals",
    "referral", "return precautions", "diet", "activity", "labs", "imaging", "results", "goals",
)

# Words that make a short line a sentence of the plan rather than a problem heading.
SENTENCE_WORDS = frozenset(
    """is are was were be been will would should could can may might has have had do does did
    i we he she they you his her their our your him them
    patient patients continue follow agrees understands discussed questions answered call return
    schedule ordered order advised recommend recommended start started refer referral""".split()
)

# Phrases that introduce a diagnosis inside a plan sentence ('consistent with a right ankle sprain').
DIAGNOSIS_CUES = (
    "consistent with", "diagnosed with", "diagnosis of", "diagnosis is", "diagnosed as", "suffering from",
    "suspect that this is", "this is likely", "most likely",
)

# ConText assertion cues: (phrase, category, direction). Categories map to assertion statuses.
CONTEXT_CUES: tuple[tuple[str, str, str], ...] = (
    *((cue, "NEGATED_EXISTENCE", "FORWARD") for cue in (
        "no", "denies", "denied", "negative for", "without", "no evidence of", "no signs of", "free of",
        "absence of", "ruled out", "not", "never had")),
    *((cue, "NEGATED_EXISTENCE", "BACKWARD") for cue in ("was ruled out", "is ruled out")),
    *((cue, "POSSIBLE_EXISTENCE", "FORWARD") for cue in (
        "possible", "possibly", "probable", "probably", "suspected", "suspicious for", "concern for", "concerning for",
        "rule out", "r/o", "questionable", "cannot rule out", "differential includes")),
    *((cue, "HISTORICAL", "FORWARD") for cue in (
        "history of", "hx of", "h/o", "past history of", "personal history of", "previous", "prior", "remote", "resolved",
        "former")),
    *((cue, "HISTORICAL", "BACKWARD") for cue in ("resolved", "has resolved", "now resolved", "in remission")),
    *((cue, "FAMILY", "FORWARD") for cue in (
        "family history of", "mother", "father", "sister", "brother", "grandmother", "grandfather", "aunt", "uncle",
        "mom", "dad", "son", "daughter", "sibling", "siblings", "cousin", "parents")),
    *((cue, "HYPOTHETICAL", "FORWARD") for cue in (
        "if", "in case of", "risk of", "risks of", "at risk for", "to prevent", "prevention of", "should he develop",
        "should she develop", "watch for", "monitor for", "screening for")),
)

ASSERTIONS = {
    "NEGATED_EXISTENCE": "negated",
    "POSSIBLE_EXISTENCE": "possible",
    "HISTORICAL": "historical",
    "FAMILY": "family",
    "HYPOTHETICAL": "hypothetical",
}
# Statuses that are not coded at all (a historical problem is coded as personal history).
NOT_CODED = ("negated", "possible", "family", "hypothetical")
