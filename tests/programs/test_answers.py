"""Answer schemas: one per LM stage from its signature, code fields narrowed per call."""

from __future__ import annotations

import json

import dspy
import pytest

from icd_graph.grammar import CODE_PATTERN, code_grammar
from programs.answers import (
    FIELD_CHARS,
    GRAMMAR_KEY,
    MAX_CHARS,
    MAX_ITEMS,
    Codes,
    OneOf,
    SchemaError,
    answer_schema,
    longest_answer,
    outside,
    portable,
)
from signatures import (
    ExtractDiagnoses,
    ExtractEvidence,
    NavigateIndex,
    ProposeCodes,
    ReconcileCodes,
    RerankCandidates,
    SelectBestMatch,
    ValidateCandidates,
)

SIGNATURES = [ExtractDiagnoses, RerankCandidates, ExtractEvidence, NavigateIndex, ValidateCandidates, ReconcileCodes,
              ProposeCodes, SelectBestMatch]
GRAMMAR = code_grammar(["E11.65", "E11.9", "I10", "W19.XXXA"])


@pytest.mark.parametrize("signature", SIGNATURES, ids=lambda s: s.__name__)
def test_a_schema_from_each_signature(signature):
    schema = answer_schema(signature)
    fields = signature.output_fields
    assert list(schema["properties"]) == list(fields) == schema["required"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    for name, field in fields.items():
        value = schema["properties"][name]
        string = value["items"] if field.annotation == list[str] else value
        if field.annotation == list[str]:
            assert value["type"] == "array" and value["maxItems"] == MAX_ITEMS
        assert string == {"type": "string", "maxLength": FIELD_CHARS.get(name, MAX_CHARS)}


def test_the_rerank_code_is_one_of_the_call_candidates_or_none():
    schema = answer_schema(RerankCandidates, {"code": OneOf.of(["E11.65", "E11.9", "E11.65", "NONE"])})
    assert schema["properties"]["code"] == {"type": "string", "enum": ["E11.65", "E11.9", "NONE"]}
    assert schema["properties"]["rationale"]["maxLength"] == FIELD_CHARS["rationale"]
    other = answer_schema(RerankCandidates, {"code": OneOf.of(["I10", "NONE"])})
    assert other["properties"]["code"]["enum"] == ["I10", "NONE"]


def test_list_numbers_and_list_items_narrow_too():
    navigate = answer_schema(NavigateIndex, {"choice": OneOf.of(range(4))})
    assert navigate["properties"]["choice"]["enum"] == ["0", "1", "2", "3"]
    assert navigate["properties"]["next_term"]["maxLength"] == FIELD_CHARS["next_term"]
    validate = answer_schema(ValidateCandidates, {"accepted": OneOf.of(["E11.65", "I10"])})
    assert validate["properties"]["accepted"] == {"type": "array", "items": {"type": "string", "enum": ["E11.65", "I10"]},
                                                  "maxItems": MAX_ITEMS}


def test_free_code_fields_take_the_code_grammar():
    schema = answer_schema(ProposeCodes, {"codes": Codes(GRAMMAR)})
    item = schema["properties"]["codes"]["items"]
    assert item == {"type": "string", "pattern": CODE_PATTERN, GRAMMAR_KEY: GRAMMAR.rules}
    served = portable(schema)
    assert served["properties"]["codes"]["items"] == {"type": "string", "pattern": CODE_PATTERN}
    assert served["properties"]["evidence"]["items"] == {"type": "string"}
    assert served["properties"]["codes"]["maxItems"] == MAX_ITEMS and served["additionalProperties"] is False
    assert GRAMMAR_KEY in item, "portable copies, it does not change the schema"


def test_a_narrowing_the_signature_cannot_take_is_refused():
    with pytest.raises(SchemaError, match="no output field cod"):
        answer_schema(RerankCandidates, {"cod": OneOf.of(["I10"])})
    with pytest.raises(SchemaError, match="no values"):
        answer_schema(RerankCandidates, {"code": OneOf.of([])})

    class Scored(dspy.Signature):
        note: str = dspy.InputField()
        score: float = dspy.OutputField()

    with pytest.raises(SchemaError, match="strings and lists of strings"):
        answer_schema(Scored)


@pytest.mark.parametrize("signature", SIGNATURES, ids=lambda s: s.__name__)
def test_the_longest_answer_bounds_every_answer(signature):
    """The bound covers an answer with every list full and every string at its length limit,
    written in the worst characters (each an escape), counted in bytes."""
    schema = answer_schema(signature)
    fields = {}
    for name, value in schema["properties"].items():
        string = value.get("items", value)
        text = "\x01" * string["maxLength"]
        fields[name] = [text] * MAX_ITEMS if value["type"] == "array" else text
    written = json.dumps(fields, indent=2, ensure_ascii=False).encode("utf-8")
    assert len(written) <= longest_answer(schema) < 2 * len(written) + 100


def test_values_outside_the_narrowing_are_counted():
    narrowed = {"accepted": OneOf.of(["E11.65", "I10"])}
    assert outside(narrowed, dspy.Prediction(accepted=["E11.65", " I10 "], rationale="")) == 0
    assert outside(narrowed, dspy.Prediction(accepted=["E11.65", "E11.9", "I10.0"], rationale="")) == 2
    assert outside({"codes": Codes(GRAMMAR)}, dspy.Prediction(codes=["E11.65", "E11", "W19XXXA"], evidence=[])) == 2
    assert outside({"code": OneOf.of(["I10", "NONE"])}, dspy.Prediction(code="NONE", rationale="")) == 0
    assert outside(None, dspy.Prediction(code="anything")) == 0
