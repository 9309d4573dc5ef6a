"""The embedded local model: message shaping, errors without the extra, and (slow) the real
Gemma 3 270M through DSPy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import dspy
import numpy as np
import pytest
from dspy.lm15 import request_from_openai_chat

from icd_graph.kb import KnowledgeBase
from programs.lm import make_lm
from programs.local import (
    CHAT_ADAPTER_MARKER,
    MAX_JSON_ITEMS,
    LlamaEngine,
    LocalModelError,
    LocalModelUnavailable,
    PromptCache,
    chat_messages,
    default_model_path,
    json_grammar_format,
    local_lm,
    merge_system,
    stop_sequences,
)

REPO = Path(__file__).resolve().parents[2]


def chat_request(messages, **config):
    return request_from_openai_chat({"model": "local/test.gguf", "messages": messages, **config})


def test_system_text_opens_the_first_user_turn_and_demo_turns_stay():
    messages = [
        {"role": "user", "content": "demo note"},
        {"role": "assistant", "content": "demo codes"},
        {"role": "user", "content": "real note"},
    ]
    merged = merge_system("Code the note.", messages)
    assert merged == [
        {"role": "user", "content": "Code the note.\n\ndemo note"},
        {"role": "assistant", "content": "demo codes"},
        {"role": "user", "content": "real note"},
    ]
    assert messages[0]["content"] == "demo note"


def test_system_text_alone_becomes_a_user_turn():
    assert merge_system("Only instructions.", []) == [{"role": "user", "content": "Only instructions."}]
    assert merge_system(None, [{"role": "user", "content": "x"}]) == [{"role": "user", "content": "x"}]


def test_a_chat_request_reaches_llama_without_a_system_role():
    request = chat_request([
        {"role": "system", "content": "Your output fields are: `codes`."},
        {"role": "user", "content": "[[ ## note ## ]]\nasthma"},
    ])
    messages = chat_messages(request)
    assert [m["role"] for m in messages] == ["user"]
    assert messages[0]["content"].startswith("Your output fields are: `codes`.\n\n[[ ## note ## ]]")


def test_chat_adapter_marker_becomes_a_stop_only_when_the_prompt_uses_it():
    asked = chat_request([{"role": "user", "content": f"end with {CHAT_ADAPTER_MARKER}"}], stop=["\n\n\n"])
    plain = chat_request([{"role": "user", "content": "2+2?"}])
    assert stop_sequences(asked, chat_messages(asked)) == ["\n\n\n", CHAT_ADAPTER_MARKER]
    assert stop_sequences(plain, chat_messages(plain)) == []


def test_a_json_schema_becomes_a_grammar_with_capped_lists():
    schema = {
        "type": "object",
        "properties": {
            "diagnoses": {"type": "array", "items": {"type": "string"}},
            "pairs": {"type": "array", "maxItems": 3, "items": {"type": "array", "items": {"type": "string"}}},
        },
    }
    request = chat_request(
        [{"role": "user", "content": "note"}],
        response_format={"type": "json_schema", "json_schema": {"name": "Out", "schema": schema, "strict": True}},
    )
    grammar = json_grammar_format(request.config.response_format)
    assert grammar["type"] == "json_object"
    properties = grammar["schema"]["properties"]
    assert properties["diagnoses"]["maxItems"] == MAX_JSON_ITEMS
    assert properties["pairs"]["maxItems"] == 3
    assert properties["pairs"]["items"]["maxItems"] == MAX_JSON_ITEMS
    assert "maxItems" not in schema["properties"]["diagnoses"]
    assert json_grammar_format({"type": "json_object"}) == {"type": "json_object"}
    assert json_grammar_format({"type": "text"}) is None
    assert json_grammar_format(None) is None


def test_without_llama_cpp_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)
    with pytest.raises(LocalModelUnavailable, match=r"pip install -e '\.\[local\]'"):
        make_lm("local")
    with pytest.raises(LocalModelUnavailable, match=r"pip install -e '\.\[local\]'"):
        make_lm("local:/models/other.gguf")


def test_a_missing_gguf_file_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "llama_cpp", types.ModuleType("llama_cpp"))
    missing = tmp_path / "absent.gguf"
    with pytest.raises(LocalModelError, match="absent.gguf"):
        local_lm(str(missing))


def test_a_file_that_is_not_gguf_fails_with_the_path(tmp_path):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[local]'")
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("not a model")
    with pytest.raises(LocalModelError, match="notes.gguf"):
        local_lm(str(bogus))


class Diagnosis(dspy.Signature):
    """Name the main diagnosis in the clinical sentence."""

    sentence: str = dspy.InputField()
    diagnosis: str = dspy.OutputField()


DEMOS = [
    dspy.Example(sentence="Follow-up for type 2 diabetes, A1c 8.1%.", diagnosis="type 2 diabetes"),
    dspy.Example(sentence="Sore throat and fever, rapid strep positive.", diagnosis="streptococcal pharyngitis"),
    dspy.Example(sentence="Twisted ankle playing tennis, swelling, no fracture.", diagnosis="ankle sprain"),
]


# The slow tests: one short sentence or note each, at most BUDGET tokens per answer.
BUDGET = 32


@pytest.fixture(scope="module")
def gemma():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[local]'")
    return local_lm(max_tokens=BUDGET)


@pytest.mark.slow
def test_the_bundled_model_answers_a_dspy_prompt_greedily(gemma):
    lm = gemma
    predict = dspy.Predict(Diagnosis)
    predict.demos = DEMOS
    sentence = "Wheezing and shortness of breath, known asthma, using albuterol often."
    with dspy.context(lm=lm, track_usage=True):
        first = predict(sentence=sentence)
        again = predict(sentence=sentence)
    assert "asthma" in first.diagnosis.lower()
    assert again.diagnosis == first.diagnosis
    usage = first.get_lm_usage()[lm.model]
    assert usage["prompt_tokens"] > 100 and 0 < usage["completion_tokens"] <= BUDGET


@pytest.mark.slow
def test_a_new_local_lm_reads_the_answers_cached_by_another():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[local]'")
    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    try:
        predict = dspy.Predict(Diagnosis)
        predict.demos = DEMOS
        sentence = "Itchy watery eyes and sneezing every spring."
        with dspy.context(lm=local_lm(max_tokens=BUDGET), track_usage=True):
            computed = predict(sentence=sentence)
        with dspy.context(lm=local_lm(max_tokens=BUDGET), track_usage=True):
            cached = predict(sentence=sentence)
    finally:
        dspy.cache = saved
    assert computed.get_lm_usage() and not cached.get_lm_usage()
    assert cached.diagnosis == computed.diagnosis


class Severity(dspy.Signature):
    """Grade how severe the clinical sentence sounds."""

    sentence: str = dspy.InputField()
    severity: str = dspy.OutputField(desc="mild, moderate or severe")


@pytest.mark.slow
def test_the_engine_keeps_prompt_states_for_later_calls(gemma):
    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    diagnose, grade = dspy.Predict(Diagnosis), dspy.Predict(Severity)
    diagnose.demos = DEMOS
    sentence = "Burning on urination for two days, urine dipstick positive for nitrites."
    try:
        lm = gemma
        with dspy.context(lm=lm):
            diagnose(sentence=DEMOS[0].sentence)
            grade(sentence=sentence)
            answer = diagnose(sentence=sentence).diagnosis
    finally:
        dspy.cache = saved
    states = lm.engine.load().cache.states.cache_state
    assert answer.strip()
    assert len(states) >= 3 and sum(len(key) for key in states) > 600
    assert all(state.scores.shape[0] == 1 for state in states.values())
    assert LlamaEngine(default_model_path(), prompt_cache_bytes=0).load().cache is None


SHORT_NOTE = """ASSESSMENT AND PLAN:
1. Essential hypertension, above goal. Increase lisinopril.
2. Hyperlipidemia. Continue atorvastatin.
"""


@pytest.fixture(scope="module")
def shipped_prediction(kb_path, tmp_path_factory):
    """`predict` with the shipped local program on a two-line note, in a fresh process."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[local]'")
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path_factory.mktemp("dspy-cache"))}
    done = subprocess.run(
        [sys.executable, "cli.py", "predict", "-", "--model", "local", "--db", str(kb_path), "--json"],
        cwd=REPO, env=env, input=SHORT_NOTE, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)["result"]


@pytest.mark.slow
def test_predict_runs_the_shipped_local_program_end_to_end(shipped_prediction, kb_path):
    result = shipped_prediction
    assert result["program"] == "medcoder"
    assert [stage["stage"] for stage in result["trace"]] == ["extract", "retrieve", "rerank"]
    assert result["usage"], "the local model was called"
    with KnowledgeBase(kb_path) as kb:
        for item in result["codes"]:
            assert kb.validate(item["code"]).billable, item["code"]
            for evidence in item["evidence"]:
                if evidence["span"]:
                    assert SHORT_NOTE[evidence["span"]["start"] : evidence["span"]["end"]] == evidence["span"]["text"]


@pytest.mark.slow
def test_the_shipped_local_program_codes_what_a_coder_would(shipped_prediction):
    """Gemma 3 270M (base) copies the diagnoses and quotes of its demos instead of reading the
    note (before the coding floor this note got no code at all); the problem extractor's
    problems, which the program codes when the LM's quotes are not in the note, carry it."""
    assert sorted(item["code"] for item in shipped_prediction["codes"]) == ["E78.5", "I10"]


def test_the_prompt_cache_keeps_states_without_their_logits_copy():
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[local]'")
    cache = PromptCache(llama_cpp.LlamaRAMCache(capacity_bytes=1000))
    for n in (300, 400):
        tokens = list(range(n))
        state = llama_cpp.llama.LlamaState(
            input_ids=np.array(tokens, dtype=np.intc), scores=np.ones((512, 1024), dtype=np.single),
            n_tokens=n, llama_state=bytes(400), llama_state_size=400, seed=0,
        )
        cache[tokens] = state
    assert list(range(350)) + [9] in cache and list(range(250)) in cache and [7] not in cache
    found = cache[list(range(350))]
    assert found.n_tokens == 400 and found.scores.shape == (1, 1024)
    assert cache.cache_size == 800
    logits = np.ones((512, 1024), dtype=np.single)
    logits[: found.n_tokens, :] = found.scores.copy()
    assert not logits[: found.n_tokens].any()
    cache[list(range(500))] = llama_cpp.llama.LlamaState(
        input_ids=np.arange(500, dtype=np.intc), scores=np.ones((512, 1024), dtype=np.single),
        n_tokens=500, llama_state=bytes(400), llama_state_size=400, seed=0,
    )
    assert cache.cache_size == 800 and list(range(250)) in cache


@pytest.mark.slow
def test_the_embedded_model_under_its_grammar_answers_only_what_each_call_lists(kb):
    """MedCoder's re-ranker can only name a retrieved candidate (or NONE), verify's first pass only
    billable codes and its selection only a listed number: every answer decoded under the grammar."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed: pip install -e '.[local]'")
    from programs.batch import code_note
    from programs.medcoder import MedCoder
    from programs.verify import Verify

    note = ("ASSESSMENT AND PLAN:\n1. Essential hypertension, above goal. Increase lisinopril.\n"
            "2. Type 2 diabetes mellitus with hyperglycemia. Start metformin.\n")
    lm = local_lm()
    medcoder = code_note(MedCoder(kb), note, lm)
    verify = code_note(Verify(kb), note, lm)
    for result in (medcoder, verify):
        answers = [answer for stage in result.trace for answer in stage.answers]
        assert answers and all(answer.path == "grammar" and answer.outside == 0 for answer in answers), answers
        assert all(kb.validate(code).billable for code in result.code_list)
    retrieved = dict(line.split(": ", 1) for line in next(s for s in medcoder.trace if s.stage == "retrieve").proposed)
    for line in next(s for s in medcoder.trace if s.stage == "rerank").proposed:
        diagnosis, code = line.split(": ", 1)
        assert code == "NONE" or code in retrieved[diagnosis].split(", "), line
    propose = next(s for s in verify.trace if s.stage == "propose")
    assert all(kb.validate(code).billable for code in propose.proposed)
