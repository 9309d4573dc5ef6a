import pytest

from programs.errors import NoteError
from programs.guarantees import Assembler, decode_note, reconcile, repair_code
from programs.result import StageTrace


def test_billable_code_is_kept_and_normalised(kb):
    assert repair_code(kb, "e119").code == "E11.9"
    assert repair_code(kb, " I10. ").code == "I10"


def test_non_billable_code_is_completed_to_a_billable_descendant(kb):
    repair = repair_code(kb, "E11.3", context="diabetic retinopathy")
    assert repair.code and repair.code.startswith("E11.3")
    assert kb.validate(repair.code).billable
    assert "completed" in repair.reason


def test_unknown_and_malformed_codes_are_dropped_with_a_reason(kb):
    for raw in ("U99.99", "not a code", ""):
        repair = repair_code(kb, raw)
        assert repair.code is None and repair.reason


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
    assert reconcile(kb, ["E11.9", "E11.65", "I10", "I10"], trace) == ["E11.65", "I10"]
    assert trace.dropped[0].item == "E11.9"
    # 'Hyperlipidemia, unspecified' gives way to the pure hypercholesterolemia the note specifies
    assert reconcile(kb, ["E78.5", "E78.00"], StageTrace("r")) == ["E78.00"]
    # '..., unspecified eye' is specific about the rest: it stays beside another complication
    assert reconcile(kb, ["E11.3299", "E11.42"], StageTrace("r")) == ["E11.3299", "E11.42"]


@pytest.mark.parametrize("data", [b"", b"  \n\t", b"\x00\x01binary", b"\xff\xfe\xfa"])
def test_empty_or_binary_notes_are_refused(data):
    with pytest.raises(NoteError):
        decode_note(data, "note.txt")
