import pytest

from programs.base import (
    diagnosis_missing,
    evidence_missing,
    naming_evidence,
    not_a_problem,
    outside_sections,
    read_status,
    statement_missing,
)
from programs.extractor import Problem
from programs.result import Span

NOTE = "Hyperlipidemia on atorvastatin 40 mg.\nASSESSMENT AND PLAN:\n1. Obesity, BMI 31. Dietitian referral.\n2. HTN, above goal."


def test_a_quote_that_names_the_diagnosis_is_kept():
    assert naming_evidence(NOTE, "Obesity", "Obesity, BMI 31.") == "Obesity, BMI 31."
    assert naming_evidence(NOTE, "Hypertension", "HTN, above goal.") == "HTN, above goal."


def test_a_quote_of_another_line_gives_way_to_the_diagnosis_the_note_writes():
    assert naming_evidence(NOTE, "Obesity", "Hyperlipidemia on atorvastatin 40 mg.") == "Obesity"
    assert naming_evidence(NOTE, "Hyperlipidemia", "Obesity, BMI 31.") == "Hyperlipidemia"
    # a diagnosis neither its quote nor the note names (copied from a demo): nothing to quote
    assert naming_evidence(NOTE, "Gout", "Obesity, BMI 31.") is None
    assert naming_evidence(NOTE, "Morbid obesity", "Obesity, BMI 31.") == "Obesity, BMI 31."


@pytest.mark.parametrize("written, read", [
    ("Hepatomegaly (present)", ("Hepatomegaly", "present")),
    ("Bitemporal hemianopia (present) (2)", ("Bitemporal hemianopia", "present")),
    ("Chest pain (negated)", ("Chest pain", "negated")),
    ("History of aortic aneurysm repair", ("History of aortic aneurysm repair", "historical")),
    ("Status post basal cell carcinoma removal (present)", ("Status post basal cell carcinoma removal", "historical")),
    ("Hyperlipidemia. Continue atorvastatin", ("Hyperlipidemia", "present")),
    ("Left shoulder pain, likely rotator cuff tendinopathy", ("Left shoulder pain", "present")),
    # a parenthesis that is not a status stays
    ("Pain in the right knee (lateral)", ("Pain in the right knee (lateral)", "present")),
])
def test_an_lm_statement_is_read_as_the_rules_read_a_problem(written, read):
    assert read_status(written) == read


@pytest.mark.parametrize("text, status, reason", [
    ("Chest pain", "negated", "negated: not coded"),
    ("Migraine", "family", "family: not coded"),
    ("Medical Treatment", "present", "a label of the note, not a problem"),
    ("Patient Education and Counseling", "present", "a label of the note, not a problem"),
    ("Disease", "present", "names no condition"),
    ("Kidney disease", "present", None),
    ("Osteoarthritis", "historical", None),
])
def test_what_the_rules_would_not_code_is_not_a_problem(text, status, reason):
    assert not_a_problem(text, status) == reason


def test_a_statement_the_note_holds_only_in_other_words_is_dropped():
    note = "ASSESSMENT AND PLAN:\n1. Right knee sprain.\n2. Type 2 diabetes mellitus without complications.\n"
    reject = statement_missing(note, [])
    assert reject("Right ankle sprain (present)", "") == "the note says 'Right knee sprain.', not 'Right ankle sprain'"
    assert reject("Right knee sprain (present)", "") is None
    assert reject("Diabetes mellitus type 2 without complications", "") is None
    assert reject("Gout", "") == "evidence 'Gout' not found in the note"
    # a word the note nowhere says
    assert reject("Right knee sprain with effusion", "") == "the note nowhere says 'effusion'"


def test_a_diagnosis_that_says_what_the_note_nowhere_says_is_dropped():
    note = "ASSESSMENT AND PLAN:\n1. Diabetes mellitus type 2. Continue metformin.\n2. HTN, above goal.\n"
    reject = diagnosis_missing(note)
    assert reject("type 2 diabetes mellitus with hyperglycemia", "Diabetes mellitus type 2.") == "the note nowhere says 'hyperglycemia'"
    assert reject("Type 2 diabetes mellitus (present)", "Diabetes mellitus type 2.") is None
    # abbreviations are read written out
    assert reject("Hypertension", "HTN, above goal.") is None
    assert reject("Hypertension", "Blood pressure above goal.") == "evidence 'Blood pressure above goal.' not found in the note"


HISTORY_NOTE = ("HISTORY OF PRESENT ILLNESS:\nHer mother had kidney disease. Denies chest pain.\n\n"
                "ASSESSMENT AND PLAN:\n1. Hypertension. Continue lisinopril.\n")


def read_problem(note: str, text: str) -> Problem:
    """A problem of HISTORY_NOTE's assessment and plan, as the extractor gives it."""
    start, body = note.index(text), note.index("1. ")
    return Problem(text, Span(start, start + len(text), text), "assessment", "present", "list", (body, len(note)))


def test_a_quote_outside_the_sections_the_rules_read_problems_in_is_not_a_problem():
    problems = [read_problem(HISTORY_NOTE, "Hypertension")]
    family = Span(HISTORY_NOTE.index("kidney"), HISTORY_NOTE.index("kidney") + 14, "kidney disease")
    assert outside_sections(problems, family) == "outside the sections the rules read problems in (assessment, plan)"
    assert outside_sections(problems, problems[0].span) is None
    # where the rules found no problem, there is no section to hold the LM to
    assert outside_sections([], family) is None
    reject = evidence_missing(HISTORY_NOTE, problems)
    assert reject("N28.9", "mother had kidney disease") == "outside the sections the rules read problems in (assessment, plan)"
    assert reject("I10", "Hypertension. Continue lisinopril.") is None
    assert statement_missing(HISTORY_NOTE, problems)("Kidney disease (present)", "") == reject("N28.9", "kidney disease")
