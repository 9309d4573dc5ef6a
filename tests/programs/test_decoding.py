"""Decoding modes: what each kind of model receives (through real DSPy -> HTTP calls to the
scripted server), which path each answer took, and which modes go with which model."""

from __future__ import annotations

import re

import dspy
import pytest

from programs.decoding import CHAT_END, decoding_of
from programs.lm import decoding_problem, make_lm
from programs.medcoder import MedCoder
from programs.verify import Verify
from tests.programs.scripted_server import ScriptedServer, section

NOTE = "ASSESSMENT AND PLAN:\n1. Essential hypertension, above goal. Increase lisinopril.\n2. Hyperlipidemia. Continue atorvastatin.\n"
EXTRACT = {"diagnoses": lambda user: {"diagnoses": ["Essential hypertension", "Hyperlipidemia"],
                                      "evidence": ["Essential hypertension, above goal.", "Hyperlipidemia."]}}
PROPOSE = {"codes": lambda user: {"codes": ["I10", "E78.5"], "evidence": ["Essential hypertension, above goal.", "Hyperlipidemia."]}}


def code(program, decoding: str, script=None):
    """(result, requests the server received) for `program` on NOTE."""
    with ScriptedServer({**EXTRACT, **(script or {})}) as server:
        lm = make_lm("hosted_vllm/scripted", server.url, cache=False, num_retries=0, decoding=decoding)
        with dspy.context(lm=lm):
            result = program(note=NOTE).result
        return result, server.requests


def stage(result, name):
    return next(s for s in result.trace if s.stage == name)


def user_text(request) -> str:
    return request["messages"][-1]["content"]


def test_a_json_schema_server_gets_each_rerank_narrowed_to_its_candidates(kb):
    result, requests = code(MedCoder(kb), "json-schema")
    reranks = [r for r in requests if "[[ ## candidates ## ]]" in user_text(r)]
    assert len(reranks) == 2
    for request in reranks:
        listed = re.findall(r'"([A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?): ', section(user_text(request), "candidates"))
        fmt = request["response_format"]
        assert fmt["type"] == "json_schema"
        schema = fmt["json_schema"]["schema"]
        assert schema["properties"]["code"] == {"type": "string", "enum": [*listed, "NONE"]}
        assert schema["required"] == ["code", "rationale"] and schema["additionalProperties"] is False
        assert "x-gbnf" not in str(schema) and "maxLength" not in str(schema)
        assert "stop" not in request
    extract = next(r for r in requests if "[[ ## problems ## ]]" in user_text(r))
    assert extract["response_format"]["json_schema"]["schema"]["properties"]["diagnoses"]["type"] == "array"
    answers = [answer for s in result.trace for answer in s.answers]
    assert [a.path for a in answers] == ["json-schema"] * 3 and not any(a.outside for a in answers)
    assert result.code_list == ["E78.5", "I10"]


def test_a_llama_cpp_server_gets_the_grammar_with_the_billable_codes(kb):
    result, requests = code(Verify(kb), "llama.cpp", PROPOSE)
    propose = next(r for r in requests if "[[ ## suggested ## ]]" in user_text(r) and "[[ ## note ## ]]" in user_text(r))
    assert "response_format" not in propose
    grammar = propose["grammar"]
    assert grammar.startswith('root ::= "{\\n  \\"codes\\": " f0 ')
    assert "\nicd-code ::= " in grammar and len(grammar) > 50_000
    selects = [r for r in requests if "[[ ## options ## ]]" in user_text(r)]
    assert selects
    for request in selects:
        numbers = re.findall(r'"(\d+)\. ', section(user_text(request), "options"))
        assert f"f0 ::= {' | '.join(chr(34) + chr(92) + chr(34) + n + chr(92) + chr(34) + chr(34) for n in numbers)}\n" in request["grammar"]
    assert [a.path for s in result.trace for a in s.answers] == ["llama.cpp"] * (1 + len(selects))
    assert stage(result, "propose").answers[0].outside == 0
    assert "I10" in result.code_list and len(result.code_list) == 2


def test_a_server_that_ignores_the_grammar_is_caught(kb):
    result, _ = code(Verify(kb), "llama.cpp")  # the default script proposes I10, E11, U99.99
    assert stage(result, "propose").answers[0].outside == 2


def test_a_vllm_server_gets_the_grammar_as_structured_outputs(kb):
    result, requests = code(MedCoder(kb), "vllm")
    assert all(r["structured_outputs"]["grammar"].startswith("root ::= ") for r in requests)
    assert not any("response_format" in r or "grammar" in r for r in requests)
    assert {a.path for s in result.trace for a in s.answers} == {"vllm"}


def test_without_constraints_chat_answers_stop_at_the_end_marker(kb):
    result, requests = code(MedCoder(kb), "auto")
    assert all(CHAT_END in r["stop"] and "response_format" not in r for r in requests)
    assert {a.path for s in result.trace for a in s.answers} == {"chat"}
    assert "I10" in result.code_list


def test_unreadable_answers_are_recorded_with_their_path(kb):
    script = {"code": lambda user: "I would pick the first one."}
    result, _ = code(MedCoder(kb), "auto", script)
    rerank = stage(result, "rerank")
    assert [a.path for a in rerank.answers] == ["unparsed", "unparsed"]
    assert rerank.answers[0].parse_failed and "stage fallback used" in " ".join(rerank.log)
    result, _ = code(MedCoder(kb), "json-schema", script)
    assert [a.path for a in stage(result, "rerank").answers] == ["unparsed", "unparsed"]
    script = {"code": lambda user: "code: NONE\nrationale: nothing fits"}
    result, _ = code(MedCoder(kb), "auto", script)
    assert [a.path for a in stage(result, "rerank").answers] == ["lenient", "lenient"]


def test_which_decoding_each_model_takes():
    from programs.local import LlamaEngine

    assert decoding_of(dspy.LM("local/x.gguf", engine=LlamaEngine("x.gguf"))) == "grammar"
    assert decoding_of(dspy.LM("openai/gpt-4o-mini")) == "json-schema"
    assert decoding_of(dspy.LM("hosted_vllm/m", api_base="http://127.0.0.1:9/v1")) == "off"
    named = dspy.LM("hosted_vllm/m", api_base="http://127.0.0.1:9/v1")
    named.decoding = "llama.cpp"
    assert decoding_of(named) == decoding_of(named.copy()) == "llama.cpp"


class Counted(dspy.LM):
    """An LM that counts how often DSPy's table of models is read for it."""

    reads = 0

    @property
    def supports_response_schema(self) -> bool:
        self.reads += 1
        return super().supports_response_schema


class Unhashable(Counted):
    __hash__ = None


def test_each_lm_reads_the_table_of_models_once_and_an_unhashable_one_every_call():
    served = [Counted("openai/gpt-4o-mini"), Counted("hosted_vllm/m", api_base="http://127.0.0.1:9/v1")]
    assert [decoding_of(lm) for lm in served * 3] == ["json-schema", "off"] * 3
    assert [lm.reads for lm in served] == [1, 1]
    unhashable = Unhashable("openai/gpt-4o-mini")
    assert [decoding_of(unhashable) for _ in range(3)] == ["json-schema"] * 3 and unhashable.reads == 3


@pytest.mark.parametrize("model, api_base, decoding, problem", [
    ("local", None, "auto", None),
    ("local", None, "off", None),
    ("local:/m.gguf", None, "grammar", None),
    ("local", None, "llama.cpp", "for model servers"),
    ("m", "http://127.0.0.1:8080/v1", "llama.cpp", None),
    ("m", "http://127.0.0.1:8080/v1", "vllm", None),
    ("openai/gpt-4o-mini", None, "json-schema", None),
    ("openai/gpt-4o-mini", None, "vllm", "give --api-base"),
    ("m", "http://127.0.0.1:8080/v1", "grammar", "embedded model's"),
    ("none", None, "off", "goes with a model"),
    ("none", None, "auto", None),
    ("m", None, "guided", "unknown decoding"),
])
def test_which_decodings_go_with_which_models(model, api_base, decoding, problem):
    found = decoding_problem(model, api_base, decoding)
    assert (found is None) if problem is None else (problem in found)


def test_a_model_s_capabilities_are_read_once_when_it_is_made(monkeypatch):
    """DSPy's table of models is read for a model when it is made (about 30 ms at a process's
    first), not by a batch's first calls, which are made at once: before, each of them read it."""
    import threading
    import time

    import programs.decoding as decoding_module

    readings, real = [], decoding_module._read_capabilities

    def slow(lm):
        readings.append(lm)
        time.sleep(0.05)
        return real(lm)

    monkeypatch.setattr(decoding_module, "_read_capabilities", slow)
    made = make_lm("hosted_vllm/scripted", "http://127.0.0.1:9/v1", cache=False, num_retries=0)
    assert readings == [made]
    assert decoding_of(made) == "off" and readings == [made]

    fresh = dspy.LM("openai/gpt-4o-mini", cache=False)
    answers: list = []
    calls = [threading.Thread(target=lambda: answers.append(decoding_module.model_capabilities(fresh))) for _ in range(8)]
    for call in calls:
        call.start()
    for call in calls:
        call.join()
    assert readings == [made, fresh] and len(answers) == 8 and len(set(answers)) == 1
    assert answers[0][0] == "json-schema"
