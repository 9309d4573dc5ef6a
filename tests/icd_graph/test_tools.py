"""The knowledge-base tools: schemas, the dispatcher on the real knowledge base, and the
recording wrapper a program queries."""

import json
import subprocess
import sys
import threading
from pathlib import Path

import jsonschema
import pytest

from icd_graph import tools
from icd_graph.tools import RecordingKnowledgeBase, ToolArgumentError, ToolCall, call, check_arguments, encode, specs


def test_every_tool_is_an_openai_function_with_a_valid_schema():
    described = specs()
    assert [t["function"]["name"] for t in described] == ["search", "index_lookup", "show", "expand", "validate", "table_lookup"]
    for tool in described:
        assert tool["type"] == "function" and tool["function"]["description"]
        schema = tool["function"]["parameters"]
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"])
        for name, prop in schema["properties"].items():
            if "default" in prop:  # defaults obey their own schema
                assert not list(jsonschema.Draft202012Validator(prop).iter_errors(prop["default"])), name


def test_dispatcher_answers_from_the_knowledge_base(kb):
    hits = call(kb, "search", {"query": "essential hypertension", "k": 5})
    assert hits[0]["code"] == "I10" and len(hits) == 5 and set(hits[0]) == {"code", "description", "matched", "source", "score"}
    entries = call(kb, "index_lookup", {"terms": ["Diabetes", "type 2 with retinopathy"]})
    assert entries[0]["path"] == "Diabetes, diabetic, type 2, with, retinopathy" and entries[0]["billable_codes"] == ["E11.319"]
    shown = call(kb, "show", {"code": "e119"})
    assert shown["code"] == "E11.9" and shown["billable"] is True
    assert any(n["kind"] == "use_additional_code" and n["from"] == "E11" and "Z79.4" in n["text"] for n in shown["notes"])
    assert all(n["from"] == "E11.9" for n in call(kb, "show", {"code": "E11.9", "inherited": False})["notes"])
    billable = call(kb, "expand", {"code": "E11", "kind": "billable", "limit": 3})
    assert billable["total"] == len(kb.complete("E11")) > 3 and [c["code"] for c in billable["codes"]] == kb.complete("E11")[:3]
    check = call(kb, "validate", {"code": "S72.001"})
    assert check["reason"] == "needs a 7th character" and "S72.001A" in check["completions"] and check["billable"] is False
    rows = call(kb, "table_lookup", {"table": "neoplasm", "term": "pituitary", "limit": 1})
    assert {"column": "Benign", "code": "D35.2", "billable_codes": ["D35.2"]} in rows[0]["cells"]
    for result in (hits, entries, shown, billable, check, rows):
        assert json.loads(encode(result)) == result


def test_unknown_code_is_a_result_and_bad_arguments_an_error(kb):
    assert "not a code" in call(kb, "show", {"code": "U99.99"})["error"]
    assert "not a code" in call(kb, "expand", {"code": "U99.99", "kind": "parent"})["error"]
    for name, arguments in [
        ("search", {}),                                        # required query missing
        ("search", {"query": "x", "k": 0}),                   # below the minimum
        ("search", {"query": "x", "source": "web"}),          # not in the enum
        ("show", {"code": "E11.9", "depth": 2}),              # no extra properties
        ("index_lookup", {"terms": "Diabetes"}),              # not an array
        ("index_lookup", {"terms": ["Fall"], "index": "drug"}),
        ("expand", {"code": "E11", "kind": "uncles"}),
        ("teleport", {}),
    ]:
        assert check_arguments(name, arguments)
        with pytest.raises(ToolArgumentError):
            call(kb, name, arguments)


def test_index_lookup_can_keep_to_the_external_cause_index(kb):
    both = call(kb, "index_lookup", {"terms": ["Fall", "falling"]})
    external = call(kb, "index_lookup", {"terms": ["Fall", "falling"], "index": "eindex"})
    assert both[0]["source"] == "index"
    assert external[0]["source"] == "eindex" and external[0]["billable_codes"] == ["W19.XXXA", "W19.XXXD", "W19.XXXS"]


def test_recording_logs_each_call_once_with_the_dispatchers_answer(kb):
    wrapper = RecordingKnowledgeBase(kb)
    wrapper.search("asthma", k=3)  # outside a recording: not logged, answered all the same
    with wrapper.recording() as log:
        hits = wrapper.search("asthma", k=3)
        wrapper.search("asthma", k=3)
        assert wrapper.complete("E11.3") == kb.complete("E11.3")
        assert wrapper.notes("I10") == kb.notes("I10")
        wrapper.validate("E11")
        wrapper.index_lookup(["Fall"], limit=5, index="eindex")
        wrapper.table("drug", "acetaminophen", limit=2)
        assert wrapper.require("E11.9") == kb.require("E11.9")  # passes through, not a tool
        with pytest.raises(Exception):
            wrapper.notes("U99.99")
    assert [h.code for h in hits] == [h.code for h in kb.search("asthma", k=3)]
    names = [event.name for event in log.events]
    assert names == ["search", "expand", "show", "validate", "index_lookup", "table_lookup", "show"]
    assert log.events[-1].result == {"error": call(kb, "show", {"code": "U99.99"})["error"]}
    for event in log.events:
        assert isinstance(event, ToolCall) and not check_arguments(event.name, event.arguments)
        assert encode(call(kb, event.name, event.arguments)) == encode(event.result)


def test_each_thread_records_its_own_calls(kb):
    wrapper = RecordingKnowledgeBase(kb)
    logs, barrier = {}, threading.Barrier(2)

    def work(query):
        with wrapper.recording() as log:
            barrier.wait()
            for _ in range(20):
                wrapper.search(query, k=2)
                wrapper.validate(query)
        logs[query] = log.events

    threads = [threading.Thread(target=work, args=(q,)) for q in ("asthma", "gout")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for query, events in logs.items():
        assert [(e.name, e.arguments.get("query") or e.arguments.get("code")) for e in events] == [("search", query), ("validate", query)]


def test_tools_module_does_not_import_dspy():
    code = "import sys, icd_graph.tools; sys.exit('dspy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(tools.__file__).parents[1]).returncode == 0
