"""Tool-calling chat records: how steps become messages, and the strict format check."""

import copy
import json

import pytest

from data.chat import LMCall, Say, chat_messages, check_record
from icd_graph.tools import ToolCall, specs


def record(steps, answer='{"codes": []}'):
    return {"id": "n1", "messages": chat_messages("You code notes.", "Code this note.", steps, answer), "tools": specs()}


LOOKUP = ToolCall("index_lookup", {"terms": ["Hypertension"]}, [{"path": "Hypertension, hypertensive", "code": "I10"}])
SHOW = ToolCall("show", {"code": "I10"}, {"code": "I10", "notes": []})


def test_steps_become_an_openai_tool_calling_chat():
    messages = record([Say("Look it up."), LOOKUP, SHOW, Say("I10 it is.")])["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant", "assistant"]
    first, second = messages[2], messages[4]
    assert first["content"] == "Look it up." and first["tool_calls"][0]["id"] == "call_1"
    assert json.loads(first["tool_calls"][0]["function"]["arguments"]) == {"terms": ["Hypertension"]}
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": json.dumps(LOOKUP.result, separators=(",", ":"))}
    assert second["content"] is None and second["tool_calls"][0]["function"]["name"] == "show"
    assert messages[-1] == {"role": "assistant", "content": '{"codes": []}', "weight": 1}
    assert all(m["weight"] == 1 for m in messages if m["role"] == "assistant")


def test_an_lm_stage_keeps_its_prompt_its_demos_and_its_answer():
    stage = LMCall("extract", (
        {"role": "system", "content": "Your output fields are: `diagnoses`."},
        {"role": "user", "content": "[[ ## note ## ]]\ndemo note"},
        {"role": "assistant", "content": "[[ ## diagnoses ## ]]\n[\"Asthma\"]"},
        {"role": "user", "content": [{"type": "text", "text": "[[ ## note ## ]]\nthe note"}]},
    ), "[[ ## diagnoses ## ]]\n[\"Hypertension\"]")
    messages = record([stage, LOOKUP])["messages"]
    assert messages[2] == {"role": "user", "content": "Your output fields are: `diagnoses`.\n\n[[ ## note ## ]]\ndemo note"}
    assert messages[3]["weight"] == 0 and messages[4] == {"role": "user", "content": "[[ ## note ## ]]\nthe note"}
    assert messages[5]["content"] == stage.completion and messages[5]["tool_calls"][0]["function"]["name"] == "index_lookup"
    assert messages[5]["weight"] == 1 and not check_record(record([stage, LOOKUP]))


def test_a_valid_record_passes():
    assert check_record(record([Say("Look it up."), LOOKUP, SHOW])) == []


def broken(change):
    good = record([Say("Look it up."), LOOKUP, SHOW])
    bad = copy.deepcopy(good)
    change(bad)
    return check_record(bad)


@pytest.mark.parametrize("change, problem", [
    (lambda r: r["messages"][1].update(role="developer"), "role 'developer'"),
    (lambda r: r["messages"].insert(2, {"role": "system", "content": "again"}), "system message after"),
    (lambda r: r["messages"][3].update(tool_call_id="call_9"), "answers no pending tool call"),
    (lambda r: r["messages"].pop(3), "not answered"),
    (lambda r: r["messages"][4]["tool_calls"][0].update(id="call_1"), "used before"),
    (lambda r: r["messages"][2]["tool_calls"][0]["function"].update(arguments="{terms: [}"), "not JSON"),
    (lambda r: r["messages"][2]["tool_calls"][0]["function"].update(arguments='{"terms": "Hypertension"}'), "is not of type 'array'"),
    (lambda r: r["messages"][4]["tool_calls"][0]["function"].update(arguments='{"code": "I10", "why": 1}'), "Additional properties"),
    (lambda r: r["messages"][4]["tool_calls"][0]["function"].update(name="browse"), "not one of the record's tools"),
    (lambda r: r["messages"][2]["tool_calls"][0]["function"].update(arguments=["I10"]), "JSON string"),
    (lambda r: r["messages"].pop(), "last message"),
    (lambda r: r["messages"][5].update(content=["not", "text"]), "tool content must be a string"),
    (lambda r: r["messages"][1].update(weight=0), "weight"),
    (lambda r: r.update(tools=[{"type": "function"}]), "not a function tool"),
])
def test_format_problems_are_found(change, problem):
    problems = broken(change)
    assert any(problem in p for p in problems), problems
