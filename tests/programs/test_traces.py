"""Program runs recorded as tool-calling chat data (real DSPy -> LiteLLM -> HTTP to the scripted
server), and the `data traces` command."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from data.chat import check_record, replay
from data.records import NoteRecord
from programs.batch import code_note
from programs.clh import CodeLikeHumans
from programs.medcoder import MedCoder
from programs.traces import trace_note, recorded, write_traces
from programs.verify import Verify

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
GOLD = {"diabetes_followup": ["E11.65", "I10", "E78.5"], "asthma_visit": ["J45.909"], "knee_injury": ["S83.511A"]}


@pytest.fixture
def notes_file(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps({"id": name, "text": (EXAMPLES / f"{name}.txt").read_text(), "codes": codes}) + "\n"
                            for name, codes in GOLD.items()))
    return path


def diabetes(diabetes_note):
    return NoteRecord("diabetes_followup", diabetes_note, tuple(GOLD["diabetes_followup"]))


def test_a_program_run_is_recorded_stage_by_stage_with_its_knowledge_base_calls(kb, lm, server, diabetes_note):
    program = MedCoder(kb)
    plain = code_note(program, diabetes_note, lm)
    before = len(server.requests)
    with recorded(program) as recording_kb:
        record = trace_note(program, recording_kb, diabetes(diabetes_note), lm, {"source": "program"})
    assert program.kb is kb
    assert check_record(record) == [] and replay(record, kb) == []
    requests = server.requests[before:]
    # the extractor's two diagnoses, then the three problems of the rules it left out
    assert record["meta"]["stages"] == "extract, rerank, rerank, rerank, rerank, rerank" and len(requests) == 6
    messages = record["messages"]
    user_turns = [m["content"] for m in messages if m["role"] == "user"]
    for request in requests:  # each stage's prompt, as sent over HTTP, is a user turn (system text first)
        system, user = request["messages"]
        assert f"{system['content']}\n\n{user['content']}" in user_turns
    searches = [(i, json.loads(c["function"]["arguments"])) for i, m in enumerate(messages)
                for c in m.get("tool_calls") or () if c["function"]["name"] == "search"]
    assert [args for _, args in searches][:2] == [
        {"query": "Essential hypertension", "k": 10, "source": "all"},
        {"query": "Type 2 diabetes mellitus with hyperglycemia", "k": 10, "source": "all"},
    ]
    extract_answer = next(i for i, m in enumerate(messages) if m["role"] == "assistant" and "[[ ## diagnoses ## ]]" in (m["content"] or ""))
    first_rerank = next(i for i, m in enumerate(messages) if m["role"] == "user" and "[[ ## candidates ## ]]" in m["content"])
    assert extract_answer <= searches[0][0] < first_rerank  # in the order the program made them
    assert [c["code"] for c in record["codes"]] == plain.code_list == ["E11.42", "E11.65", "E66.9", "E78.5", "I10"]
    assert json.loads(messages[-1]["content"]) == {"codes": record["codes"]}
    for item in record["codes"]:
        for evidence in item["evidence"]:
            assert diabetes_note[evidence["start"] : evidence["end"]] == evidence["text"]
    assert record["gold"] == GOLD["diabetes_followup"] and record["f1"] == pytest.approx(0.75)  # P 3/5, R 3/3


def test_a_program_inside_a_program_is_recorded_too(kb, lm, diabetes_note):
    program = Verify(kb, first_pass=CodeLikeHumans(kb))
    with recorded(program) as recording_kb:
        record = trace_note(program, recording_kb, diabetes(diabetes_note), lm, {})
    assert program.kb is kb and program.first_pass.kb is kb
    tools = {c["function"]["name"] for m in record["messages"] for c in m.get("tool_calls") or ()}
    assert {"index_lookup", "show", "expand", "validate"} <= tools
    stages = record["meta"]["stages"].split(", ")
    assert stages[0] == "first_pass.extract" and stages[-1] == "select"
    assert check_record(record) == [] and replay(record, kb) == []


def test_rejection_sampling_keeps_the_notes_that_reach_the_f1(kb, lm, tmp_path, diabetes_note):
    records = [NoteRecord(name, (EXAMPLES / f"{name}.txt").read_text(), tuple(codes)) for name, codes in GOLD.items()]
    everything = write_traces(CodeLikeHumans(kb), records, tmp_path / "all.jsonl", lm, {}, threads=2)
    f1 = {json.loads(line)["id"]: json.loads(line)["f1"] for line in (tmp_path / "all.jsonl").read_text().splitlines()}
    # diabetes: I10 and E78.5 of the gold's three, among five codes (P 2/5, R 2/3)
    assert everything.written == 3 and f1 == {"diabetes_followup": pytest.approx(0.5), "asthma_visit": 0.0, "knee_injury": 0.0}
    kept = write_traces(CodeLikeHumans(kb), records, tmp_path / "kept.jsonl", lm, {}, min_f1=0.5)
    lines = [json.loads(line) for line in (tmp_path / "kept.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == ["diabetes_followup"] and kept.written == 1
    assert sorted(kept.rejected) == [("asthma_visit", 0.0), ("knee_injury", 0.0)] and kept.as_dict()["mean_f1"] == pytest.approx(0.5)


def traces(*args):
    return CliRunner().invoke(cli, ["data", "traces", *map(str, args)])


def test_data_traces_command(kb_path, server, notes_file, labels_dir, tmp_path, monkeypatch):
    out = tmp_path / "clh.jsonl"
    args = ["--dataset", f"jsonl:{notes_file}", "--program", "clh", "--model", "scripted", "--api-base", server.url,
            "--out", out, "--min-f1", "0.5", "--db", kb_path, "--json"]
    first = traces(*args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["written"] == 1 and [r["id"] for r in summary["rejected"]] == ["asthma_visit", "knee_injury"]
    again = json.loads(traces(*args).output)  # resumed: the kept note is not run again
    assert again["written"] == 0 and again["skipped"] == 1 and len(again["rejected"]) == 2
    record = json.loads(out.read_text())
    assert record["meta"] == {"source": "program", "dataset": f"jsonl:{notes_file}", "labels": "", "program": "clh", "model": "scripted",
                              "kb_release": record["meta"]["kb_release"], "note_text": True, "stages": record["meta"]["stages"]}
    assert record["meta"]["stages"].startswith("extract, navigate")
    gold = tmp_path / "gold.jsonl"
    labels = labels_dir / "aci_icd10cm_medcoder_train_valid.csv"
    made = traces("--dataset", "aci:valid", "--labels", labels, "--from-gold", "--out", gold, "--db", kb_path)
    assert made.exit_code == 0, made.output
    assert "have a trajectory" in made.output and len(gold.read_text().splitlines()) == 16
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for order in ([out, gold], [gold, out]):  # the first file's fields decide the types: both orders load
        both = datasets.load_dataset("json", data_files=[str(f) for f in order], split="train", cache_dir=str(tmp_path / "hf"))
        assert both.num_rows == 17 and sorted({row["source"] for row in both["meta"]}) == ["gold", "program"]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "aci:valid", "--from-gold", "--program", "clh"], "give either --program"),
    (["--dataset", "jsonl:{out}", "--from-gold"], "is the input file"),
    (["--dataset", "aci:valid", "--from-gold"], "need gold codes: pass --labels"),
    (["--dataset", "mdace:val", "--program", "clh"], "--mimic-notes"),
    (["--dataset", "mdace:val", "--from-gold", "--model", "local"], "go with --program"),
])
def test_bad_input_is_one_line(kb_path, tmp_path, args, message):
    out = tmp_path / "x.jsonl"
    out.write_text('{"id": "a", "text": "Hypertension.", "codes": ["I10"]}\n')
    result = traces(*[arg.format(out=out) for arg in args], "--out", out, "--db", kb_path)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert result.output.count("\n") == 1 or result.output.startswith("error:")
    assert out.read_text() == '{"id": "a", "text": "Hypertension.", "codes": ["I10"]}\n'  # left as it was


def test_the_coding_rules_alone_give_tool_calls_only(kb_path, kb, notes_file, tmp_path):
    out = tmp_path / "floor.jsonl"
    result = traces("--dataset", f"jsonl:{notes_file}", "--program", "medcoder", "--model", "none", "--out", out, "--db", kb_path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["written"] == 3
    for line in out.read_text().splitlines():
        record = json.loads(line)
        assert record["meta"]["model"] == "none" and record["meta"]["stages"] == ""
        assert {m["role"] for m in record["messages"]} == {"system", "user", "assistant", "tool"}
        assert check_record(record) == [] and replay(record, kb) == []
        plain = code_note(MedCoder(kb), (EXAMPLES / f"{record['id']}.txt").read_text(), None)
        assert [c["code"] for c in record["codes"]] == plain.code_list
