"""The three pipelines on the real knowledge base, through real DSPy -> HTTP calls to the
scripted server."""

import json

import dspy
import pytest

from programs.clh import CodeLikeHumans
from programs.lm import make_lm
from programs.medcoder import MedCoder
from programs.registry import build_program
from programs.result import CodingResult, Dropped
from programs.verify import Verify
from tests.programs.scripted_server import ScriptedServer, all_codes, closest_code, section

FOOT_ULCER = "Type 2 diabetes mellitus with foot ulcer of the right great toe, limited to breakdown of skin."
FOOT_ULCER_NOTE = f"ASSESSMENT AND PLAN:\n1. {FOOT_ULCER}\n   Wound care, podiatry referral.\n"


def check_result(kb, note, prediction):
    result = prediction.result
    assert prediction.codes == result.code_list == sorted(set(result.code_list))
    for item in result.codes:
        assert kb.validate(item.code).billable, item.code
        assert item.description == kb.require(item.code).description
        for evidence in item.evidence:
            if evidence.span:
                assert note[evidence.span.start : evidence.span.end] == evidence.span.text
    assert result.usage, "LM usage is reported"
    assert CodingResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    return result


def run(program, lm, note):
    with dspy.context(lm=lm):
        return program(note=note)


def stage(result, name):
    return next(s for s in result.trace if s.stage == name)


def test_medcoder_retrieves_then_reranks(kb, diabetes_note):
    """An extractor that invents one diagnosis and quotes another in its own case and spacing, a
    re-ranker that names a code outside the candidates once: the program keeps what the note
    documents, quotes the note itself, codes each diagnosis from its candidates, and codes the
    rules' problems it left out (the two diabetic ones) too."""
    script = {
        "diagnoses": lambda user: {
            "diagnoses": ["Essential hypertension", "Hyperlipidemia", "Asthma", "Obesity"],
            "evidence": ["ESSENTIAL HYPERTENSION,  above goal", "Hyperlipidemia on atorvastatin 40 mg",
                         "Wheezing at night.", "Obesity, BMI 31"],
        },
        "code": lambda user: {"code": "J45.909" if section(user, "diagnosis") == "Obesity" else closest_code(user),
                              "rationale": "Best match."},
    }
    with ScriptedServer(script) as scripted:
        lm = make_lm("hosted_vllm/scripted", scripted.url, cache=False, num_retries=0)
        result = check_result(kb, diabetes_note, run(MedCoder(kb), lm, diabetes_note))
    assert result.code_list == ["E11.3293", "E11.42", "E66.9", "E78.5", "I10"]
    dropped = {d.item: d.reason for d in stage(result, "extract").dropped}
    assert "not found in the note" in dropped["Asthma"]
    # quoted from the history of present illness, not where the rules read problems: the rules'
    # hyperlipidemia of the assessment and plan is coded instead
    assert dropped["Hyperlipidemia"] == "outside the sections the rules read problems in (assessment, plan)"
    left = [line for line in stage(result, "extract").log if "left out" in line]
    assert len(left) == 3 and "'Diabetic peripheral polyneuropathy'" in left[1] and "'Hyperlipidemia'" in left[2]
    quoted = {item.code: item.evidence[0] for item in result.codes}
    start = diabetes_note.index("Essential hypertension, above goal")
    assert (quoted["I10"].span.start, quoted["I10"].span.end, quoted["I10"].match) == (start, start + 34, "normalized")
    assert quoted["E78.5"].span.start == diabetes_note.index("4. Hyperlipidemia") + 3
    retrieve = stage(result, "retrieve")
    assert [line.split(":")[0] for line in retrieve.proposed][:2] == ["Essential hypertension", "Obesity"]
    assert any("J45.909 for 'Obesity' is not among the retrieved candidates" in line for line in stage(result, "rerank").log)


RETINOPATHY = "Type 2 diabetes mellitus with mild nonproliferative diabetic retinopathy without macular\n   edema, both eyes"


def test_clh_walks_the_index_validates_and_reconciles(kb, diabetes_note):
    """A validator that accepts a wrong eye beside the right one (the rules veto it: 'right eye'
    says what the note does not) and rejects the rest; a reconciler that leaves out the codes of
    the problems it was not shown as statements (they stay), adds one nothing asks for (dropped)
    and one E11's note asks for that the note does not say in words (Z79.84 'Long term (current)
    use of oral hypoglycemic drugs': the note lists metformin; dropped, as a model adds what the
    note says, it does not infer). What a coder codes remains."""

    def validate(user):
        candidates = all_codes(user, "candidates")
        accepted = ["E11.3293", "E11.3291"] if "E11.3293" in candidates else candidates[:1]
        return {"accepted": accepted, "rationale": "Title matches."}

    script = {
        "statements": lambda user: {"statements": [RETINOPATHY, "Essential hypertension, above goal.", "Hyperlipidemia."],
                                    "lead_terms": ["Diabetes", "Hypertension", "Hyperlipidemia"]},
        "next_term": lambda user: {"choice": "1", "next_term": ""},
        "accepted": validate,
        "final_codes": lambda user: {"final_codes": ["E11.3293", "I10", "E78.5", "Z79.84", "J45.909"],
                                     "rationale": "Bilateral; oral hypoglycemics."},
    }
    with ScriptedServer(script) as scripted:
        lm = make_lm("hosted_vllm/scripted", scripted.url, cache=False, num_retries=0)
        result = check_result(kb, diabetes_note, run(CodeLikeHumans(kb), lm, diabetes_note))
        prompts = [r["messages"][-1]["content"] for r in scripted.requests]
    assert [s.stage for s in result.trace] == ["extract", "navigate", "validate", "reconcile"]
    assert result.code_list == ["E11.3293", "E11.42", "E66.9", "E78.5", "I10"]
    validate = stage(result, "validate")
    assert [d.item for d in validate.dropped] == ["E11.3291", "E11.3292", "E11.3299"]
    assert any(line.startswith("the LM's E11.3291 says more that") for line in validate.log)
    reconciled = {d.item: d.reason for d in stage(result, "reconcile").dropped}
    assert set(reconciled) == {"J45.909", "Z79.84"}
    assert reconciled["J45.909"] == "added at reconciliation, but no validated code's note asks for it"
    assert reconciled["Z79.84"] == ("added at reconciliation for E11.3293, E11.42, but the note does not say "
                                    "'Long term current use oral hypoglycemic drugs'")
    stays = [line for line in stage(result, "reconcile").log if line.endswith("the only code of its statement; it stays")]
    assert [line.split()[4].rstrip(",") for line in stays] == ["E11.42", "E66.9"]
    codes = {item.code: item for item in result.codes}
    assert codes["E11.3293"].evidence[0].span.text == RETINOPATHY
    assert stage(result, "reconcile").kept == result.code_list
    validator = [p for p in prompts if "[[ ## accepted ## ]]" in p and "E11.3293" in p]
    assert validator and "Use additional code" in validator[0], "the validator is shown tabular notes"


def code_foot_ulcer(kb, final_codes):
    """CLH on the foot-ulcer note: the validator accepts E11.621, the reconciler answers `final_codes`."""
    script = {
        "statements": lambda user: {"statements": [FOOT_ULCER], "lead_terms": ["Diabetes"]},
        "accepted": lambda user: {"accepted": ["E11.621"], "rationale": "Diabetic foot ulcer."},
        "final_codes": lambda user: {"final_codes": final_codes, "rationale": "Added the paired code."},
    }
    with ScriptedServer(script) as scripted:
        lm = make_lm("hosted_vllm/scripted", scripted.url, cache=False, num_retries=0)
        return check_result(kb, FOOT_ULCER_NOTE, run(CodeLikeHumans(kb), lm, FOOT_ULCER_NOTE))


def test_clh_drops_a_code_the_reconciler_adds_that_no_note_asks_for(kb):
    result = code_foot_ulcer(kb, ["E11.621", "J45.909"])
    assert result.code_list == ["E11.621"]
    reason = "added at reconciliation, but no validated code's note asks for it"
    assert stage(result, "reconcile").dropped == [Dropped("J45.909", reason)]


@pytest.mark.parametrize("added", ["L97.511", "l97.51"])
def test_clh_keeps_a_code_a_validated_codes_note_asks_for_with_its_evidence(kb, added):
    result = code_foot_ulcer(kb, ["E11.621", added])
    assert result.code_list == ["E11.621", "L97.511"]
    diabetes, ulcer = result.codes
    assert [e.span.text for e in ulcer.evidence] == [FOOT_ULCER]
    assert ulcer.evidence == diabetes.evidence
    assert "E11.621" in ulcer.rationale
    assert not stage(result, "reconcile").dropped


def test_verify_shows_descriptions_only_and_maps_back(kb, lm, diabetes_note, server):
    before = len(server.requests)
    result = check_result(kb, diabetes_note, run(Verify(kb), lm, diabetes_note))
    # 'E11' and 'U99.99' quoted as 'Type 2 diabetes mellitus', within the retinopathy the rules
    # coded E11.3293 (both eyes): neither names it as well, so the rules' code is verified in their
    # place, and the selector, shown its group, keeps it; the rules' problems the proposals leave
    # out are verified too, and the hyperlipidemia's pick among its group stands
    vetoes = [line for line in stage(result, "propose").log if "names too little" in line]
    assert [line.split()[2] for line in vetoes] == ["E11", "U99.99"] and not stage(result, "expand").dropped
    assert result.code_list == ["E11.3293", "E11.42", "E66.9", "E78.2", "I10"]
    assert stage(result, "select").log == ["E78.5 replaced by E78.2"]
    selections = [r["messages"][-1]["content"] for r in server.requests[before:] if "[[ ## options ## ]]" in r["messages"][-1]["content"]]
    assert selections
    for prompt in selections:
        options = prompt.split("[[ ## options ## ]]")[1]
        assert "I10" not in options and "E11." not in options


def test_medcoder_quotes_the_diagnosis_when_its_evidence_is_another_line(kb, diabetes_note):
    crossed = {"diagnoses": lambda user: {
        "diagnoses": ["Hyperlipidemia", "Obesity"], "evidence": ["Obesity, BMI 31.", "Hyperlipidemia on atorvastatin"],
    }}
    with ScriptedServer(crossed) as scripted:
        lm = make_lm("hosted_vllm/scripted", scripted.url, cache=False, num_retries=0)
        result = check_result(kb, diabetes_note, run(MedCoder(kb), lm, diabetes_note))
    quoted = {item.code[:3]: item.evidence[0].span for item in result.codes}
    assert (quoted["E78"].text, quoted["E66"].text) == ("Hyperlipidemia", "Obesity")
    assert len([line for line in stage(result, "extract").log if "is quoted instead" in line]) == 1
    # the note writes 'Hyperlipidemia' first in its history, outside where the rules read
    # problems: the rules' hyperlipidemia of the assessment is coded instead
    assert quoted["E78"].start == diabetes_note.index("4. Hyperlipidemia") + 3


def test_verify_drops_a_proposal_whose_evidence_is_not_in_the_note(kb, diabetes_note):
    from tests.programs.scripted_server import ScriptedServer, all_codes, closest_code, section

    from programs.lm import make_lm

    invented = {"codes": lambda user: {"codes": ["I10", "J45.909"], "evidence": ["Essential hypertension, above goal.", "Wheezing at night."]}}
    with ScriptedServer(invented) as scripted:
        lm = make_lm("hosted_vllm/scripted", scripted.url, cache=False, num_retries=0)
        result = check_result(kb, diabetes_note, run(Verify(kb), lm, diabetes_note))
    propose = stage(result, "propose")
    assert propose.kept == ["I10"] and propose.codes == ["I10", "E11.3293", "E11.42", "E66.9", "E78.5"]
    assert [(d.item, "not found in the note" in d.reason) for d in propose.dropped] == [("J45.909", True)]
    assert not [code for code in result.code_list if code.startswith("J45")]


def test_verify_over_another_program(kb, lm, diabetes_note):
    result = check_result(kb, diabetes_note, run(Verify(kb, first_pass=MedCoder(kb)), lm, diabetes_note))
    assert [s.stage for s in result.trace] == ["first_pass.extract", "first_pass.retrieve", "first_pass.rerank", "expand", "select"]
    # MedCoder's E11.65 and I10, each confirmed by the selector among its neighbours, quoted
    # where MedCoder quoted them
    assert stage(result, "first_pass.rerank").kept == ["I10", "E11.65", "E11.42", "E78.5", "E66.9"]
    assert result.code_list == ["E11.42", "E11.65", "E66.9", "E78.2", "I10"]
    quoted = {item.code: item.evidence[0].span.text for item in result.codes}
    assert (quoted["E11.65"], quoted["I10"]) == ("uncontrolled with hyperglycemia", "Essential hypertension, above goal.")


def test_unparseable_output_falls_back_and_is_logged(kb, diabetes_note):
    from tests.programs.scripted_server import ScriptedServer, all_codes, closest_code, section

    from programs.lm import make_lm

    garbage = {key: (lambda user: "I am not sure.") for key in ("next_term", "accepted", "final_codes")}
    garbage["statements"] = lambda user: {"statements": ["Essential hypertension", "Hyperlipidemia"],
                                          "lead_terms": ["Hypertension", "Hyperlipidemia"]}
    with ScriptedServer(garbage) as broken:
        lm = make_lm("hosted_vllm/scripted", broken.url, cache=False, num_retries=0)
        result = check_result(kb, diabetes_note, run(CodeLikeHumans(kb), lm, diabetes_note))
    # the fallbacks: the coding rules' index entry and candidate, the validated codes, for the two
    # statements and the three problems the rules add
    assert result.code_list == ["E11.3293", "E11.42", "E66.9", "E78.5", "I10"]
    assert [sum("stage fallback used" in line for line in stage(result, name).log) for name in ("navigate", "validate", "reconcile")] == [5, 5, 1]
    assert "reconciler returned no codes; the validated codes are kept" in stage(result, "reconcile").log


def test_a_loosely_formatted_answer_is_read_leniently(kb, diabetes_note):
    from tests.programs.scripted_server import ScriptedServer, all_codes, closest_code, section

    from programs.lm import make_lm

    bullets = {"diagnoses": lambda user: "Diagnoses:\n- Essential hypertension\n- Hyperlipidemia"}
    with ScriptedServer(bullets) as loose:
        lm = make_lm("hosted_vllm/scripted", loose.url, cache=False, num_retries=0)
        result = check_result(kb, diabetes_note, run(MedCoder(kb), lm, diabetes_note))
    assert result.code_list == ["E11.3293", "E11.42", "E66.9", "E78.5", "I10"]
    assert any("read leniently" in line for line in result.trace[0].log)
    assert all(e.span for item in result.codes for e in item.evidence)


def test_state_holds_predictors_only_and_round_trips(kb, tmp_path):
    program = build_program("clh", kb)
    state = program.dump_state()
    assert set(state) == {"extract", "navigate", "validate", "reconcile"}
    program.navigate.demos = [dspy.Example(statement="s", lead_term="t", entries=["1. x"], choice="1", next_term="")]
    copy = program.deepcopy()
    assert copy.kb is kb and copy.navigate is not program.navigate
    path = tmp_path / "state.json"
    program.save(str(path))
    fresh = build_program("clh", kb)
    fresh.load(str(path))
    assert fresh.navigate.demos[0]["choice"] == "1"


def test_the_order_the_lm_lists_proposals_in_does_not_change_the_codes(kb, lm, diabetes_note):
    reordered = {"codes": lambda user: {"codes": ["U99.99", "E11", "I10"],
                                        "evidence": ["Type 2 diabetes mellitus", "Type 2 diabetes mellitus", "Essential hypertension, above goal."]}}
    with ScriptedServer(reordered) as scripted:
        other = make_lm("hosted_vllm/scripted", scripted.url, cache=False, num_retries=0)
        shuffled = check_result(kb, diabetes_note, run(Verify(kb), other, diabetes_note))
    result = check_result(kb, diabetes_note, run(Verify(kb), lm, diabetes_note))
    assert shuffled.codes == result.codes
    assert shuffled.code_list == ["E11.3293", "E11.42", "E66.9", "E78.2", "I10"]


def test_a_note_longer_than_the_context_is_read_in_parts(kb, lm, diabetes_note, server):
    before = len(server.requests)
    result = check_result(kb, diabetes_note, run(MedCoder(kb, max_note_chars=400), lm, diabetes_note))
    extract = stage(result, "extract")
    parts = sum("[[ ## diagnoses ## ]]" in r["messages"][0]["content"] for r in server.requests[before:])
    assert parts > 1 and any(f"in {parts} parts" in line for line in extract.log)
    assert [d.reason for d in extract.dropped] == ["repeated diagnosis"] * (2 * parts - 2)
    assert result.code_list == ["E11.42", "E11.65", "E66.9", "E78.5", "I10"]


@pytest.mark.parametrize("name", ["medcoder", "clh", "verify"])
def test_a_batch_preload_reads_the_hierarchy_from_memory_and_codes_as_queries_do(kb_path, lm, diabetes_note, name):
    """`preload(batch=True)` loads the code hierarchy: the knowledge base then answers the
    program's descriptions and look-ups from memory, with the codes and trace of the queries."""
    from icd_graph.kb import KnowledgeBase

    with KnowledgeBase(kb_path) as queried, KnowledgeBase(kb_path) as loaded:
        for thread in build_program(name, loaded).preload(batch=True):
            thread.join()
        assert loaded._nodes is not None and queried._nodes is None
        results = [run(build_program(name, kb), lm, diabetes_note).result.to_dict() for kb in (queried, loaded)]
    assert results[0] == results[1] and results[0]["codes"]
