"""run_batch: a note that cannot be coded is reported and left out; a model that fails stops
the batch with a ModelError, keeping the notes already written, and a rerun finishes the rest."""

import json
import socket

import pytest
from click.testing import CliRunner

from cli import cli
from data.records import NoteRecord
from programs.batch import run_batch
from programs.errors import ModelError
from programs.lm import make_lm
from programs.medcoder import MedCoder
from tests.programs.scripted_server import ScriptedServer

NOTES = [
    NoteRecord("a", "Assessment: Essential hypertension, above goal.", ()),
    NoteRecord("b", "Assessment: Type 2 diabetes mellitus, uncontrolled with hyperglycemia.", ()),
    NoteRecord("c-empty", "   ", ()),
    NoteRecord("z-outage", "Assessment: OUTAGE. Essential hypertension, above goal.", ()),
]


class Outage(ScriptedServer):
    """Answers like the scripted server, but fails (HTTP 503) every call about a note that says
    OUTAGE, while `down` is set."""

    down = True

    def answer(self, messages, as_json=False):
        if self.down and "OUTAGE" in messages[-1]["content"]:
            return None
        return super().answer(messages, as_json)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_failing_model_stops_the_batch_and_keeps_the_notes_written(kb, tmp_path):
    out = tmp_path / "runs" / "one" / "preds.jsonl"
    with Outage() as server:
        lm = make_lm("hosted_vllm/scripted", server.url, cache=False, num_retries=0)
        with pytest.raises(ModelError, match=r"failed after 0 retries: server error \(HTTP 503.* 2 of 4 notes are saved"):
            run_batch(MedCoder(kb), NOTES, out, lm)
        assert [row["id"] for row in lines(out)] == ["a", "b"]
        assert [row["codes"] for row in lines(out)] == [["I10"], ["E11.65"]]

        server.down = False
        lm.spent = 0.25  # the cost of priced calls made with the same LM before this run
        before, seen = len(server.requests), []

        def on_note(note_id):  # a note reported done is already in the file, for any reader
            seen.append((note_id, f'"id": "{note_id}"' in out.read_text(encoding="utf-8")))

        summary = run_batch(MedCoder(kb), NOTES, out, lm, threads=0, on_note=on_note)
        calls = len(server.requests) - before
    assert (summary.skipped, summary.written) == (2, 1)
    assert [note_id for note_id, _ in summary.failed] == ["c-empty"]
    assert "empty" in summary.failed[0][1]
    assert sorted(seen) == [("c-empty", False), ("z-outage", True)]
    assert [row["id"] for row in lines(out)] == ["a", "b", "z-outage"]
    assert lines(out)[2]["codes"] == ["I10"]
    # the scripted server reports 100 prompt and 20 completion tokens per call
    usage = summary.usage["hosted_vllm/scripted"]
    assert calls == 2 and (usage["prompt_tokens"], usage["completion_tokens"]) == (200, 40)
    assert summary.cost == 0.0, "only this run's calls are priced (the scripted model has no price)"


def test_no_note_starts_once_the_model_has_failed(kb, tmp_path):
    records = [NoteRecord("first", "Assessment: OUTAGE. Essential hypertension, above goal.", ())] + [
        NoteRecord(f"n{i}", "Assessment: Essential hypertension, above goal.", ()) for i in range(12)]
    with Outage() as server:
        lm = make_lm("hosted_vllm/scripted", server.url, cache=False, num_retries=0)
        with pytest.raises(ModelError, match=r"of 13 notes are saved"):
            run_batch(MedCoder(kb), records, tmp_path / "out.jsonl", lm, threads=1)
    # one thread: the failing note, and the one note handed out ahead of it, are all that start
    assert 1 <= len(server.requests) <= 3


def test_a_batch_with_no_model_codes_by_the_rules(kb, tmp_path):
    out = tmp_path / "preds.jsonl"
    notes = [NoteRecord(r.id, r.text.replace("Assessment: ", "ASSESSMENT AND PLAN:\n1. "), ()) for r in NOTES[:2]]
    summary = run_batch(MedCoder(kb), notes, out, None)
    assert (summary.written, summary.cost, summary.usage) == (2, 0.0, {})
    assert [row["codes"] for row in lines(out)] == [["I10"], ["E11.65"]]


def test_a_batch_against_a_dead_model_exits_1_and_writes_nothing(kb_path, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": r.id, "text": r.text}) + "\n" for r in NOTES))
    out = tmp_path / "preds.jsonl"
    result = CliRunner().invoke(cli, [
        "predict", "--input", str(notes), "--output", str(out), "--model", "scripted",
        "--api-base", f"http://127.0.0.1:{port}/v1", "--retries", "0", "--db", str(kb_path), "--json",
    ])
    assert result.exit_code == 1
    assert result.output.startswith("error: model hosted_vllm/scripted failed after 0 retries")
    assert "Traceback" not in result.output
    assert not out.exists() or out.read_text() == ""


def test_a_program_error_is_not_taken_for_a_model_failure(kb, tmp_path):
    class Broken(MedCoder):
        def code_note(self, note):
            raise RuntimeError("a bug in the program")

    with pytest.raises(RuntimeError, match="a bug in the program"):
        run_batch(Broken(kb), NOTES[:1], tmp_path / "preds.jsonl", None)
