"""The problem extractor on real ACI-BENCH notes and synthetic inpatient notes."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from programs.extractor import ProblemExtractor

INPATIENT = """\
HISTORY OF PRESENT ILLNESS:
Admitted with cough, fever and shortness of breath. No history of asthma.

DISCHARGE DIAGNOSES:
1. Community acquired pneumonia
2. Acute on chronic systolic heart failure
3. Rule out myocardial infarction
# Type 2 diabetes mellitus with diabetic chronic kidney disease
- History of breast cancer
- Mother has diabetes
- Denies chest pain

DISCHARGE INSTRUCTIONS:
Call with any questions or concerns.
"""


@pytest.fixture(scope="module")
def extract() -> ProblemExtractor:
    return ProblemExtractor()


@pytest.fixture(scope="module")
def aci_notes() -> dict[str, str]:
    folder = Path(os.environ["ACI_BENCH_DIR"])
    with (folder / "train.csv").open(encoding="utf-8") as handle:
        return {row["encounter_id"]: row["note"] for row in csv.DictReader(handle)}


def statuses(problems) -> dict[str, str]:
    return {" ".join(p.text.split()): p.assertion for p in problems}


def test_inpatient_diagnoses_in_every_list_format_with_their_status(extract):
    problems = extract(INPATIENT)
    assert statuses(problems) == {
        "Community acquired pneumonia": "present",
        "Acute on chronic systolic heart failure": "present",
        "Rule out myocardial infarction": "possible",
        "Type 2 diabetes mellitus with diabetic chronic kidney disease": "present",
        "History of breast cancer": "historical",
        "Mother has diabetes": "family",
        "Denies chest pain": "negated",
    }
    assert {p.section for p in problems} == {"assessment"}
    assert [p.form for p in problems][:4] == ["numbered", "numbered", "numbered", "hash"]
    for p in problems:
        assert INPATIENT[p.span.start : p.span.end] == p.text == p.span.text


def test_a_former_habit_is_historical(extract):
    note = "ASSESSMENT AND PLAN:\n1. Former smoker.\n2. Hypertension.\n"
    assert statuses(extract(note)) == {"Former smoker": "historical", "Hypertension": "present"}


def test_aci_headings_under_assessment_and_plan_not_their_bullets(extract, aci_notes):
    problems = extract(aci_notes["D2N002"])
    assert [p.text for p in problems] == ["Arthritis", "Hypothyroidism", "Status post renal transplant"]
    assert {p.form for p in problems} == {"heading"}
    assert all(p.assertion == "present" for p in problems)


def test_a_separate_assessment_with_bullets_and_its_plan_headings_give_each_problem_once(extract, aci_notes):
    problems = extract(aci_notes["D2N025"])
    assert [p.text for p in problems] == [
        "Chronic congestive heart failure with mixed presentation", "Preop examination", "Diabetes mellitus", "Colonoscopy",
    ]
    assert {p.form for p in problems} == {"bullet"}


def test_history_of_a_heading_is_historical_and_a_negation_inside_a_diagnosis_is_not(extract, aci_notes):
    assert statuses(extract(aci_notes["D2N007"]))["History of coronary artery bypass graft"] == "historical"
    demo = (Path(__file__).resolve().parents[2] / "data" / "examples" / "diabetes_followup.txt").read_text(encoding="utf-8")
    first = extract(demo)[0]
    assert first.text.startswith("Type 2 diabetes mellitus with mild nonproliferative") and "without macular" in first.text
    assert first.assertion == "present"


def test_plan_sentences_are_not_problems_but_a_named_diagnosis_in_a_plan_is(extract):
    note = (
        "PLAN\n\n1. We will continue to observe the patient.\n2. She is due for a mammogram in 04/2022.\n\n"
        "After reviewing the radiographs, her symptoms are consistent with a right ankle sprain of the lateral "
        "ligament complex, more specifically the anterior talofibular ligament.\n\nINSTRUCTIONS\n\nFollow up in 2 weeks."
    )
    problems = extract(note)
    assert [(p.text, p.form, p.section) for p in problems] == [
        ("right ankle sprain of the lateral ligament complex", "cue", "plan"),
    ]


def test_a_note_without_sections_is_read_as_one_assessment(extract):
    note = "1. Hypertension.\n2. Hyperlipidemia: continue atorvastatin.\n3. We will see her in 3 months."
    assert [p.text for p in extract(note)] == ["Hypertension", "Hyperlipidemia"]


def test_the_pipeline_tokenizes_every_note_as_medspacys_own_tokenizer_does(extract, aci_notes):
    """The extractor builds medspaCy's clinical tokenizer as its pipeline's own (not in place of
    a blank English one): its tokens are those of `medspacy.load`'s, on every train note."""
    import medspacy

    reference = medspacy.load(medspacy_enable=["medspacy_tokenizer"]).tokenizer
    nlp, _ = extract._pipeline()
    for note in [*aci_notes.values(), INPATIENT, "c/o chf+cp, don't 1.5mg q.d. http://x.org pt's BP 120/80"]:
        assert [t.text for t in nlp.tokenizer(note)] == [t.text for t in reference(note)]


def test_each_problem_knows_the_body_of_its_section(extract):
    body = (INPATIENT.index("DISCHARGE DIAGNOSES") + len("DISCHARGE DIAGNOSES"), INPATIENT.index("DISCHARGE INSTRUCTIONS"))
    problems = extract(INPATIENT)
    assert problems and {problem.body for problem in problems} == {body}
    assert INPATIENT[slice(*body)].rstrip().endswith("Denies chest pain")


class AnswersOnce:
    """Answers each note once, as a read-ahead process does; counts the questions."""

    def __init__(self):
        self.asked = 0

    def problems(self, note):
        self.asked += 1
        return [] if self.asked == 1 else None


def test_a_note_read_twice_is_read_once():
    extractor = ProblemExtractor()
    extractor.ahead = AnswersOnce()
    assert extractor(INPATIENT) == [] and extractor(INPATIENT) == []
    assert extractor.ahead.asked == 1


def test_medspacy_loads_with_the_collector_paused(monkeypatch):
    """Importing spaCy and medspaCy and building the pipeline (the start-up of a batch's read-ahead
    process) runs with the collector paused (icd_graph.loading), and resumes it."""
    import gc

    import programs.extractor as extractor_module

    seen, real = [], extractor_module._load
    monkeypatch.setattr(extractor_module, "_load", lambda: seen.append(gc.isenabled()) or real())
    was = gc.isenabled()
    gc.enable()
    try:
        extractor = ProblemExtractor()
        assert extractor.load() and extractor(INPATIENT)
        assert seen == [False] and gc.isenabled()
    finally:
        gc.unfreeze()
        (gc.enable if was else gc.disable)()
