import pytest

import signatures
from programs.lenient import lenient_parse


@pytest.mark.parametrize(
    "text, expected",
    [
        ("- Type 2 diabetes\n- Hypertension", {"diagnoses": ["Type 2 diabetes", "Hypertension"], "evidence": []}),
        ('diagnoses: ["a", "b"]\nevidence:\n1. x\n2) y\n[[ ## completed ## ]]', {"diagnoses": ["a", "b"], "evidence": ["x", "y"]}),
        ("[[ ## diagnoses ## ]]\nasthma; obesity", {"diagnoses": ["asthma", "obesity"], "evidence": []}),
        ("I am not sure.", {"diagnoses": [], "evidence": []}),
    ],
)
def test_lists(text, expected):
    assert lenient_parse(signatures.ExtractDiagnoses, text) == expected


def test_string_fields_need_a_header():
    assert lenient_parse(signatures.RerankCandidates, "[[ ## code ## ]] E11.9\n**rationale**: fits") == {
        "code": "E11.9",
        "rationale": "fits",
    }
    assert lenient_parse(signatures.RerankCandidates, "E11.9 because it fits") == {"code": "", "rationale": ""}
