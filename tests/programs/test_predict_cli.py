"""`python cli.py predict` end to end: real DSPy -> LiteLLM -> HTTP to the scripted server."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli

REPO = Path(__file__).resolve().parents[2]


def predict(*args, **kwargs):
    return CliRunner().invoke(cli, ["predict", *map(str, args)], **kwargs)


def test_one_note_end_to_end_in_a_subprocess(kb_path, server, diabetes_note, tmp_path):
    env = {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, "cli.py", "predict", "data/examples/diabetes_followup.txt", "--program", "clh",
         "--model", "scripted", "--api-base", server.url, "--db", str(kb_path), "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    # the scripted extractor's two statements, each reaching its index term's code and quoted as
    # the rules read it (its first sentence: the plan after it is no diagnosis), and the rules'
    # problems it left out
    assert payload["codes"] == [c["code"] for c in payload["result"]["codes"]] == ["E11.3293", "E11.42", "E66.9", "E78.5", "I10"]
    spans = [evidence["span"] for item in payload["result"]["codes"] for evidence in item["evidence"]]
    assert [span["text"] for span in spans][-2:] == ["Hyperlipidemia", "Essential hypertension, above goal."]
    for span in spans:
        assert diabetes_note[span["start"] : span["end"]] == span["text"]


def test_table_output_and_stdin(kb_path, server, diabetes_note):
    result = predict("-", "--program", "medcoder", "--model", "scripted", "--api-base", server.url,
                     "--db", kb_path, input=diabetes_note)
    assert result.exit_code == 0, result.output
    assert "I10" in result.output and "prompt" in result.output


@pytest.mark.parametrize("content", [b"   \n", b"\x00\x01\x02"])
def test_empty_or_binary_note_is_one_line_error(kb_path, server, tmp_path, content):
    note = tmp_path / "note.txt"
    note.write_bytes(content)
    result = predict(note, "--model", "scripted", "--api-base", server.url, "--db", kb_path)
    assert result.exit_code == 1
    assert result.output.startswith("error:") and "note.txt" in result.output
    assert "Traceback" not in result.output


def test_unreachable_model_is_one_line_error(kb_path, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    note = REPO / "data" / "examples" / "knee_injury.txt"
    result = predict(note, "--program", "verify", "--model", "scripted", "--api-base", f"http://127.0.0.1:{port}/v1",
                     "--retries", "0", "--db", kb_path)
    assert result.exit_code == 1
    assert "failed after 0 retries: cannot reach the server" in result.output and "Traceback" not in result.output


def test_batch_is_resumable(kb_path, server, tmp_path):
    notes = tmp_path / "notes.jsonl"
    texts = {path.stem: path.read_text() for path in sorted((REPO / "data" / "examples").glob("*.txt"))}
    texts["empty"] = "  "
    notes.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in texts.items()))
    out = tmp_path / "preds.jsonl"
    args = ["--input", notes, "--output", out, "--program", "medcoder", "--model", "scripted",
            "--api-base", server.url, "--db", kb_path, "--threads", "2", "--json"]
    first = predict(*args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["written"] == 3 and summary["failed"][0]["id"] == "empty"
    assert summary["usage"]
    lines = out.read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == ["asthma_visit", "diabetes_followup", "knee_injury"]

    out.write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    before = len(server.requests)
    second = predict(*args)
    assert second.exit_code == 0, second.output
    summary = json.loads(second.output)
    assert summary["skipped"] == 2 and summary["written"] == 1
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(json.loads(line)["id"] for line in lines)
    assert all(set(row) == {"id", "codes", "result"} for row in rows)
    assert 0 < len(server.requests) - before < 10, "only the unfinished note was coded again"


def test_the_table_sums_up_each_stage_and_verbose_shows_the_details(kb_path, diabetes_note):
    from tests.programs.scripted_server import ScriptedServer

    garbage = "I would pick the first one, " + "the the the " * 40
    with ScriptedServer({"code": lambda user: garbage}) as scripted:
        args = ["-", "--program", "medcoder", "--model", "scripted", "--api-base", scripted.url, "--db", kb_path]
        short = predict(*args, input=diabetes_note)
        verbose = predict(*args, "--verbose", input=diabetes_note)
    assert short.exit_code == 0 and verbose.exit_code == 0, short.output + verbose.output
    lines = short.output.splitlines()
    assert any(line.startswith("extract: ") and "proposed" in line and "1 LM answer (chat)" in line for line in lines)
    assert any(line.startswith("rerank: ") and "LM answers (unparsed)" in line for line in lines)
    assert "the the the" not in short.output and "unparseable LM output" not in short.output
    assert "--verbose" in short.output
    assert "unparseable LM output" in " ".join(verbose.output.split())
    assert len(verbose.output) > len(short.output)


def test_a_decoding_that_does_not_go_with_the_model_is_a_usage_error(kb_path, server):
    note = REPO / "data" / "examples" / "knee_injury.txt"
    for args, said in [
        (["--model", "scripted", "--decoding", "llama.cpp"], "--decoding llama.cpp names the server at --api-base"),
        (["--model", "none", "--decoding", "off"], "--decoding goes with a model"),
        (["--model", "scripted", "--api-base", server.url, "--decoding", "grammar"], "--decoding grammar is the embedded model's"),
    ]:
        result = predict(note, *args, "--db", kb_path)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error:") and said in result.output and result.output.count("\n") == 1


def test_a_llama_cpp_server_decodes_every_answer_under_its_grammar(kb_path, server, diabetes_note):
    result = predict("-", "--program", "clh", "--model", "scripted", "--api-base", server.url, "--decoding", "llama.cpp",
                     "--db", kb_path, "--json", input=diabetes_note)
    assert result.exit_code == 0, result.output
    trace = json.loads(result.output)["result"]["trace"]
    paths = {answer["path"] for stage in trace for answer in stage["answers"]}
    assert paths == {"llama.cpp"}
    assert all(answer["outside"] == 0 for stage in trace if stage["stage"] in ("navigate", "validate") for answer in stage["answers"])
    assert "grammar" in server.requests[-1] and "response_format" not in server.requests[-1]
