import pytest

from icd_graph.codes import (
    category,
    dotted,
    is_code,
    normalize,
    note_references,
    referenced,
    undotted,
    with_seventh,
)
from icd_graph.errors import IcdError, MalformedCode


@pytest.mark.parametrize(
    "text, code",
    [
        ("e119", "E11.9"),
        ("E11.9", "E11.9"),
        (" E11.9 ", "E11.9"),
        ("W19XXXA", "W19.XXXA"),
        ("w19.xxxa", "W19.XXXA"),
        ("S72001A", "S72.001A"),
        ("I10", "I10"),
        ("c7a.1", "C7A.1"),
        ("QA0.0101", "QA0.0101"),
    ],
)
def test_normalize_accepts_dotted_undotted_and_any_case(text, code):
    assert normalize(text) == code


@pytest.mark.parametrize("text", ["834.11A", "", "   ", "hello", "E1.19", "E11.99999", "E11-", "E11..9"])
def test_normalize_rejects_what_cannot_be_a_code(text):
    with pytest.raises(MalformedCode) as error:
        normalize(text)
    assert isinstance(error.value, IcdError)
    assert repr(text) in str(error.value)
    assert not is_code(text)


def test_undotted_dotted_and_category():
    assert undotted("S72.001A") == "S72001A"
    assert dotted("S72001A") == "S72.001A"
    assert dotted("I10") == "I10"
    assert category("E11.9") == "E11"


@pytest.mark.parametrize(
    "code, char, expanded",
    [("W19", "A", "W19.XXXA"), ("S00.00", "D", "S00.00XD"), ("T51.3X1", "A", "T51.3X1A"), ("S72.001", "S", "S72.001S")],
)
def test_with_seventh_pads_with_placeholder_x(code, char, expanded):
    assert with_seventh(code, char) == expanded


def test_note_reference_forms():
    assert note_references("code to identify site of ulcer (L97.4-, L97.5-)") == [("L97.4", None), ("L97.5", None)]
    assert note_references("organism (B95-B97)") == [("B95", "B97")]
    assert referenced("gestational diabetes (O24.4-)", "O24.41")
    assert referenced("diabetes mellitus (E08-E13)", "E11.9")
    assert not referenced("diabetes mellitus (E08-E13)", "E14")
    assert not referenced("type 1 diabetes mellitus (E10.-)", "E11.9")
