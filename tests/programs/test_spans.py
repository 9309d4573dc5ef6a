import pytest

from programs.spans import locate

NOTE = "Pt has TYPE 2  diabetes mellitus.\nBP well controlled on lisinopril. No chest pain."


def check(evidence):
    if evidence.span:
        assert NOTE[evidence.span.start : evidence.span.end] == evidence.span.text


@pytest.mark.parametrize(
    "quote, match, text",
    [
        ('"BP well controlled on lisinopril"', "exact", "BP well controlled on lisinopril"),
        ("type 2 diabetes mellitus", "normalized", "TYPE 2  diabetes mellitus"),
        ("blood pressure is well controlled on lisinopril", "fuzzy", "BP well controlled on lisinopril."),
        ("hepatic encephalopathy", "none", None),
        ("", "none", None),
    ],
)
def test_locate(quote, match, text):
    evidence = locate(NOTE, quote)
    check(evidence)
    assert evidence.match == match
    assert (evidence.span.text if evidence.span else None) == text
    assert evidence.quote == quote
