"""Answer grammars read by llama.cpp itself (the bundled model's vocabulary, no weights): the
answers JSONAdapter would write are sentences, answers outside the schema are not."""

from __future__ import annotations

import ctypes
import json
import math
import random

import pytest

from programs.answers import FIELD_CHARS, MAX_ITEMS, Codes, OneOf, answer_schema
from programs.gbnf import literal, to_gbnf
from signatures import ExtractDiagnoses, NavigateIndex, ProposeCodes, RerankCandidates, SelectBestMatch, ValidateCandidates

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[local]'")


class Probe:
    """Feeds a text token by token through llama.cpp's grammar sampler, then the end of text."""

    def __init__(self):
        from programs.local import default_model_path

        self.llama = llama_cpp.Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)
        self.vocab = self.llama._model.vocab
        self.end = self.llama.token_eos()

    def accepts(self, grammar: str, text: str) -> bool:
        sampler = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
        assert sampler, "llama.cpp could not parse the grammar"
        try:
            for token in [*self.llama.tokenize(text.encode(), add_bos=False, special=False), self.end]:
                one = llama_cpp.llama_token_data(id=token, logit=0.0, p=0.0)
                single = llama_cpp.llama_token_data_array(data=ctypes.pointer(one), size=1, selected=-1, sorted=False)
                llama_cpp.llama_sampler_apply(sampler, ctypes.byref(single))
                if math.isinf(one.logit):
                    return False
                if token != self.end:
                    llama_cpp.llama_sampler_accept(sampler, token)
            return True
        finally:
            llama_cpp.llama_sampler_free(sampler)


@pytest.fixture(scope="module")
def probe() -> Probe:
    return Probe()


def written(**fields) -> str:
    """An answer as DSPy's JSONAdapter writes the demos."""
    return json.dumps(fields, indent=2, ensure_ascii=False)


def test_the_rerank_grammar_takes_only_the_candidates(probe):
    grammar = to_gbnf(answer_schema(RerankCandidates, {"code": OneOf.of(["E11.65", "E11.9", "NONE"])}))
    for code in ("E11.65", "E11.9", "NONE"):
        assert probe.accepts(grammar, written(code=code, rationale="Type 2 diabetes, \"uncontrolled\" — hyperglycémie.\n"))
    assert probe.accepts(grammar, written(code="E11.9", rationale=""))
    assert probe.accepts(grammar, written(code="E11.9", rationale="x" * FIELD_CHARS["rationale"]))
    refused = [
        written(code="E11.6", rationale="close"),
        written(code="I10", rationale="not listed"),
        written(code="e11.9", rationale="case"),
        written(code="E11.9", rationale="x" * (FIELD_CHARS["rationale"] + 1)),
        written(rationale="fields in the wrong order", code="E11.9"),
        written(code="E11.9"),
        written(code="E11.9", rationale="", extra="no"),
        json.dumps({"code": "E11.9", "rationale": "compact"}),
        written(code="E11.9", rationale="ok") + "\n\nmore text",
        "[[ ## code ## ]]\nE11.9",
    ]
    assert [text for text in refused if probe.accepts(grammar, text)] == []


def test_list_answers_take_none_to_max_items_of_the_listed_values(probe):
    grammar = to_gbnf(answer_schema(ValidateCandidates, {"accepted": OneOf.of(["E11.65", "I10"])}))
    assert probe.accepts(grammar, written(accepted=[], rationale="none fits"))
    assert probe.accepts(grammar, written(accepted=["I10"], rationale="r"))
    assert probe.accepts(grammar, written(accepted=["E11.65", "I10", "E11.65"], rationale="r"))
    assert probe.accepts(grammar, written(accepted=["I10"] * MAX_ITEMS, rationale="r"))
    assert not probe.accepts(grammar, written(accepted=["I10"] * (MAX_ITEMS + 1), rationale="r"))
    assert not probe.accepts(grammar, written(accepted=["I10", "E11.9"], rationale="r"))
    assert not probe.accepts(grammar, written(accepted="I10", rationale="r"))


def test_list_numbers(probe):
    navigate = to_gbnf(answer_schema(NavigateIndex, {"choice": OneOf.of(range(4))}))
    assert probe.accepts(navigate, written(choice="0", next_term="Hyperglycemia"))
    assert probe.accepts(navigate, written(choice="3", next_term=""))
    assert not probe.accepts(navigate, written(choice="4", next_term=""))
    assert not probe.accepts(navigate, written(choice="3.", next_term=""))
    select = to_gbnf(answer_schema(SelectBestMatch, {"choice": OneOf.of(range(1, 13))}))
    assert probe.accepts(select, written(choice="12", rationale="r"))
    assert not probe.accepts(select, written(choice="0", rationale="r"))
    assert not probe.accepts(select, written(choice="13", rationale="r"))


def test_free_text_lists(probe):
    grammar = to_gbnf(answer_schema(ExtractDiagnoses))
    assert probe.accepts(grammar, written(diagnoses=["type 2 diabetes", "essential hypertension"],
                                          evidence=["Type 2 diabetes, A1c 8.1%.", "BP 150/90 \\ above goal"]))
    assert probe.accepts(grammar, written(diagnoses=[], evidence=[]))
    assert not probe.accepts(grammar, written(diagnoses=["a" * (FIELD_CHARS.get("diagnoses", 150) + 1)], evidence=[]))
    assert not probe.accepts(grammar, written(diagnoses=["raw\u0001control"], evidence=[]).replace("\\u0001", "\u0001"))


def test_proposed_codes_are_billable_codes_of_the_release(probe, kb):
    grammar = to_gbnf(answer_schema(ProposeCodes, {"codes": Codes(kb.code_grammar())}))
    codes = random.Random(0).sample(kb.billable_codes(), 300)
    for start in range(0, len(codes), MAX_ITEMS):
        chunk = codes[start : start + MAX_ITEMS]
        assert probe.accepts(grammar, written(codes=chunk, evidence=["The note."] * len(chunk))), chunk
    for wrong in ("E11", "E11.6", "E11.99", "e11.9", "E119", "U99.99", "S72.001", "W19XXXA", "E11.9 "):
        assert not probe.accepts(grammar, written(codes=["I10", wrong], evidence=["a", "b"])), wrong


def test_literals_escape_what_gbnf_reads_specially():
    assert literal('{\n  "a\\b":\t') == '"{\\n  \\"a\\\\b\\":\\t"'
    assert to_gbnf({"type": "object", "properties": {}}).startswith('root ::= "{}"')
