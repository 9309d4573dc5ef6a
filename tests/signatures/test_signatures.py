import dspy
import pytest
from dspy.primitives.prediction import Prediction

import signatures

ALL = [getattr(signatures, name) for name in signatures.__all__]


@pytest.mark.parametrize("signature", ALL, ids=lambda s: s.__name__)
def test_outputs_are_simple_and_do_not_shadow_prediction(signature):
    for name, field in signature.output_fields.items():
        assert not hasattr(Prediction, name), f"{signature.__name__}.{name} clashes with Prediction"
        assert field.annotation in (str, list[str])
        assert field.json_schema_extra.get("desc"), f"{signature.__name__}.{name} has no description"


@pytest.mark.parametrize("signature", ALL, ids=lambda s: s.__name__)
def test_instructions_are_written_for_a_coder(signature):
    text = signature.instructions
    assert "certified medical coder" in text
    assert "    " not in text.splitlines()[1], "docstring indentation leaked into the prompt"


def test_note_level_prompts_carry_the_guideline_rules():
    for signature in (signatures.ExtractDiagnoses, signatures.ExtractEvidence, signatures.ProposeCodes):
        text = signature.instructions
        assert "rule out" in text and "highest specificity" in text and "combination code" in text


def test_the_verifier_is_shown_descriptions_not_codes():
    assert set(signatures.SelectBestMatch.input_fields) == {"evidence", "options", "suggested"}
    assert "description" in signatures.SelectBestMatch.input_fields["options"].json_schema_extra["desc"]
    assert "number" in signatures.SelectBestMatch.input_fields["suggested"].json_schema_extra["desc"]


def test_chat_adapter_formats_every_signature():
    adapter = dspy.ChatAdapter()
    for signature in ALL:
        structure = adapter.format_field_structure(signature)
        for name in signature.output_fields:
            assert f"[[ ## {name} ## ]]" in structure
