import pytest

from programs.errors import NoteError
from programs.guarantees import Assembler, decode_note, reconcile, repair_code
from programs.result import StageTrace


def test_billable_code_is_kept_and_normalised(kb):
    assert repair_code(kb, "e119").code == "E11.9"
    assert repair_code(kb, " I10. ").code == "I10"


def test_an_incomplete_code_is_completed_to_the_index_default(kb):
    # The alphabetic index prints E11.319 for 'Diabetes, type 2, with, retinopathy' (macular
    # edema is a subterm of its own): the default when the note says no more.
    (entry, *_) = kb.index_lookup(["Diabetes", "type 2", "with", "retinopathy"])
    assert entry.path == "Diabetes, diabetic, type 2, with, retinopathy" and entry.code == "E11.319"
    repair = repair_code(kb, "E11.3", context="diabetic retinopathy")
    assert repair.code == "E11.319"
    assert repair.reason == "E11.3 is not billable; completed to E11.319"


@pytest.mark.parametrize(
    "raw, context, code",
    [
        ("E11.3", "diabetic retinopathy with macular edema", "E11.311"),  # the edema is documented
        ("E11.3", "diabetic retinopathy without macular edema", "E11.319"),  # ... and here denied
        ("E11.64", "type 2 diabetes with hypoglycemia with coma", "E11.641"),
        ("E11.64", "type 2 diabetes with hypoglycemia", "E11.649"),
        ("E11.31", "", "E11.319"),
        ("E11", "type 2 diabetes", "E11.9"),  # 'without complications'
        ("W19", "fall at home", "W19.XXXA"),  # initial encounter
        ("S72.001", "hip fracture", "S72.001A"),  # initial encounter for closed fracture
        ("S72.001", "hip fracture, subsequent encounter, routine healing", "S72.001D"),
        ("S52.5", "distal radius fracture", "S52.509A"),  # no side named: unspecified radius
        ("M17", "osteoarthritis of the right knee", "M17.11"),
        ("M17", "osteoarthritis of knee", "M17.9"),
        ("J45", "asthma", "J45.909"),  # 'uncomplicated'
        ("J45.9", "asthma exacerbation", "J45.901"),
        ("N18", "chronic kidney disease stage 3", "N18.30"),  # stage 3, not stage 1
        ("I25", "coronary artery disease", "I25.10"),  # 'without angina pectoris'
    ],
)
def test_completion_picks_what_a_coder_would(kb, raw, context, code):
    assert repair_code(kb, raw, context).code == code


def test_unknown_and_malformed_codes_are_dropped_with_a_reason(kb):
    reasons = {raw: repair_code(kb, raw) for raw in ("U99.99", "not a code", "", " . ")}
    assert {raw: (r.code, r.reason) for raw, r in reasons.items()} == {
        "U99.99": (None, "unknown code"), "not a code": (None, "malformed"), "": (None, "empty code"), " . ": (None, "empty code"),
    }


def test_assembler_repairs_locates_merges_and_logs(kb):
    note = "Assessment: Essential hypertension, above goal. Type 2 diabetes mellitus."
    trace = StageTrace("stage")
    assembler = Assembler(kb, note)
    assembler.add("I10", ["essential hypertension, above goal"], "htn", trace)
    assembler.add("i10", ["Essential hypertension"], "htn", trace)
    assembler.add("E11.9", ["a sentence that is not there at all"], "dm", trace)
    assembler.add("Q99.999", ["x"], "", trace)
    codes = assembler.build()
    assert [c.code for c in codes] == ["E11.9", "I10"]
    htn = codes[1]
    assert htn.description == kb.require("I10").description
    assert {e.match for e in htn.evidence} == {"normalized", "exact"}
    for item in codes:
        for evidence in item.evidence:
            if evidence.span:
                assert note[evidence.span.start : evidence.span.end] == evidence.span.text
    assert codes[0].evidence[0].span is None
    assert any("not found in the note" in line for line in trace.log)
    assert [d.item for d in trace.dropped] == ["Q99.999"]
    assert assembler.quotes("I10") == ["essential hypertension, above goal", "Essential hypertension"]


def test_reconcile_removes_excludes1_pairs_and_less_specific_codes(kb):
    trace = StageTrace("reconcile")
    assert reconcile(kb, ["E11.9", "E10.9"], trace) == ["E11.9"]
    assert "Excludes1" in trace.dropped[0].reason
    trace = StageTrace("reconcile")
    assert reconcile(kb, ["I10", "I10", "E11.9", "E11.65"], trace) == ["I10", "E11.65"]
    assert [(d.item, d.reason) for d in trace.dropped] == [("E11.9", "less specific than E11.65 in the same category")]
    assert reconcile(kb, ["E11.9", "E10.9", "I10"], StageTrace("r")) == ["E11.9", "I10"]
    # a catch-all stays when its category has no other code
    assert reconcile(kb, ["E78.5", "I10"], StageTrace("r")) == ["E78.5", "I10"]
    # 'Hyperlipidemia, unspecified' gives way to the pure hypercholesterolemia the note specifies
    assert reconcile(kb, ["E78.5", "E78.00"], StageTrace("r")) == ["E78.00"]
    # '..., unspecified eye' is specific about the rest: it stays beside another complication
    assert reconcile(kb, ["E11.3299", "E11.42"], StageTrace("r")) == ["E11.3299", "E11.42"]


@pytest.mark.parametrize("data", [b"", b"  \n\t", b"\x00\x01binary", b"\xff\xfe\xfa"])
def test_empty_or_binary_notes_are_refused(data):
    with pytest.raises(NoteError):
        decode_note(data, "note.txt")
