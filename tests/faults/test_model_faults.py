"""Every way a model server fails, through the real DSPy -> HTTP path: each failure is retried and
the notes come out as without it; once the retries are spent, one line names the failure (never
the note); empty answers never reach DSPy's cache, whose key names the server; compile against a
dead model stops at once and saves nothing."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from click.testing import CliRunner

from cli import cli
from data.records import NoteRecord
from programs.batch import code_note, run_batch
from programs.errors import ModelError
from programs.lm import make_lm
from tests.faults.conftest import CONDITIONS, SCRIPT, SECRET, assessed, note_text
from tests.faults.fault_server import FAILURES, KINDS, FaultServer, Plan

NOTES = 24


def lm_for(server: FaultServer, retries: int = 1, timeout: float = 1.0, cache: bool = True):
    return make_lm("scripted", server.url, num_retries=retries, timeout=timeout, cache=cache)


def run_cli(*args) -> "CliRunner.Result":
    return CliRunner().invoke(cli, [*map(str, args)])


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.fixture(scope="module")
def baseline(medcoder) -> dict[str, list[str]]:
    """The codes of the synthetic notes on a server that never fails."""
    with FaultServer(script=SCRIPT) as server:
        lm = lm_for(server, retries=0, cache=False)
        return {f"n{n}": code_note(medcoder, note_text(n), lm).code_list for n in range(NOTES)}


def test_every_fault_is_retried_and_the_notes_come_out_as_without_faults(medcoder, baseline, isolated_cache, tmp_path):
    records = [NoteRecord(f"n{n}", note_text(n), ()) for n in range(NOTES)]
    with FaultServer(Plan(first=1, kinds=KINDS), SCRIPT, retry_after=0.2) as server:
        summary = run_batch(medcoder, records, tmp_path / "out.jsonl", lm_for(server), threads=8)
    assert set(server.tally.faults) == set(KINDS), "every kind of fault was injected"
    assert summary.written == NOTES and not summary.failed
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {line["id"]: line["codes"] for line in lines} == baseline
    assert all(codes for codes in baseline.values())


def test_a_rate_limit_waits_as_retry_after_says(medcoder, baseline, isolated_cache):
    with FaultServer(Plan(first=1, kinds=("429",)), SCRIPT, retry_after=1.0) as server:
        assert code_note(medcoder, note_text(0), lm_for(server)).code_list == baseline["n0"]
    sent = defaultdict(list)
    for at, prompt, _ in server.log:
        sent[prompt].append(at)
    assert sent and all(len(times) == 2 and times[1] - times[0] >= 0.9 for times in sent.values())


EXPECTED = {
    "hang": "no answer within 1 s",
    "429": "rate limited (HTTP 429",
    "500": "server error (HTTP 500",
    "non-json": "not a chat completion",
    "empty": "empty answers",
    "null": "empty answers",
    "truncated": "not a chat completion",
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_spent_retries_give_one_line_naming_the_failure(kind, kb_path, isolated_cache, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text(note_text(3))
    with FaultServer(Plan(first=99, kinds=(kind,)), SCRIPT, retry_after=0) as server:
        result = run_cli("predict", note, "--program", "medcoder", "--model", "scripted", "--api-base", server.url,
                         "--retries", "1", "--timeout", "1", "--db", kb_path)
    assert result.exit_code == 1, result.output
    line = one_line(result.stderr)
    assert line.startswith("error: model hosted_vllm/scripted failed after 1 retry") and EXPECTED[kind] in line
    assert server.tally.requests == 2, "the first call and one retry, then stop"
    assert SECRET not in result.output and "Traceback" not in result.output


def test_an_answer_that_never_parses_falls_back_and_says_so(kb_path, isolated_cache, tmp_path):
    note = tmp_path / "note.txt"
    note.write_text(note_text(4))
    with FaultServer(Plan(first=99, kinds=("unparseable",), json_too=True), SCRIPT) as server:
        result = run_cli("predict", note, "--program", "medcoder", "--model", "scripted", "--api-base", server.url,
                         "--retries", "0", "--db", kb_path, "--json")
    assert result.exit_code == 0, result.output
    log = json.loads(result.stdout)["result"]["trace"][0]["log"]
    assert any("unparseable LM output" in entry and "fallback" in entry for entry in log)
    assert SECRET not in result.stderr


def test_an_empty_answer_is_never_cached(medcoder, baseline, isolated_cache):
    isolated_cache()
    with FaultServer(Plan(first=99, kinds=("empty",)), SCRIPT) as server:
        with pytest.raises(ModelError, match="empty answers"):
            code_note(medcoder, note_text(1), lm_for(server, retries=0))
        server.plan = Plan()
        asked = server.tally.requests
        assert code_note(medcoder, note_text(1), lm_for(server, retries=0)).code_list == baseline["n1"]
        assert server.tally.requests > asked, "the healthy server was asked, not the cache"
        asked = server.tally.requests
        assert code_note(medcoder, note_text(1), lm_for(server, retries=0)).code_list == baseline["n1"]
        assert server.tally.requests == asked, "a real answer is cached"


def test_the_cache_keys_on_the_server(medcoder, isolated_cache):
    isolated_cache()
    # the same diagnosis and evidence, written in capitals
    other = {"diagnoses": lambda user: {field: [item.upper() for item in items] for field, items in assessed(user).items()}}
    with FaultServer(script=SCRIPT) as first, FaultServer(script=other) as second:
        one = code_note(medcoder, note_text(2), lm_for(first, retries=0)).code_list
        two = code_note(medcoder, note_text(2), lm_for(second, retries=0))
    assert one and second.tally.requests > 0
    assert two.trace[0].kept == [CONDITIONS[2].upper()], "the second server's own answer, not the first one's from the cache"


@pytest.mark.parametrize("kind", ["500", "empty"])
def test_compile_against_a_dead_model_stops_at_once_and_saves_nothing(kind, kb_path, isolated_cache, tmp_path):
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": f"c{n}", "text": note_text(n), "codes": ["I10"]}) + "\n" for n in range(6)))
    out = tmp_path / "compiled" / "medcoder.json"
    with FaultServer(Plan(first=99, kinds=(kind,)), SCRIPT) as server:
        result = run_cli("compile", "--program", "medcoder", "--model", "scripted", "--api-base", server.url,
                         "--retries", "0", "--train", f"jsonl:{notes}", "--dev", f"jsonl:{notes}",
                         "--optimizer", "bootstrap", "--out", out, "--db", kb_path)
    assert result.exit_code == 1
    assert "failed after 0 retries" in result.stderr.splitlines()[-1]
    assert server.tally.requests == 1, "stopped at the first failed call"
    assert not out.exists() and not out.parent.exists()
    assert SECRET not in result.output and "Traceback" not in result.output


class Poison(Plan):
    """Every call about one note fails with HTTP 500; the others get `others` (None: answered)."""

    def __init__(self, poisoned: str, others: str | None = None):
        super().__init__()
        self.poisoned, self.others = poisoned, others

    def fault(self, prompt: str, attempt: int) -> str | None:
        return "500" if self.poisoned in prompt else self.others


def test_a_batch_stopped_by_the_model_keeps_the_notes_in_flight_and_resumes(medcoder, baseline, isolated_cache, tmp_path):
    records = [NoteRecord(f"n{n}", note_text(n), ()) for n in range(12)]
    out = tmp_path / "out.jsonl"
    with FaultServer(Poison("visit 0.", others="slow"), SCRIPT) as server:
        with pytest.raises(ModelError, match=r"of 12 notes are saved in .*out.jsonl: rerun with --output .*out.jsonl to resume") as stop:
            run_batch(medcoder, records, out, lm_for(server, retries=0), threads=4)
        saved = {json.loads(line)["id"] for line in out.read_text().splitlines()}
        assert {"n1", "n2", "n3"} <= saved and len(saved) < 11, "the notes in flight are saved, the rest not started"
        assert f"{len(saved)} of 12 notes are saved" in str(stop.value)
        server.plan = Plan()
        summary = run_batch(medcoder, records, out, lm_for(server, retries=0), threads=4)
    assert summary.skipped == len(saved) and summary.written == 12 - len(saved)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(r.id for r in records)
    assert all(row["codes"] == baseline[row["id"]] for row in rows)


def test_compile_logs_name_failing_notes_by_id_only(kb_path, isolated_cache, tmp_path):
    notes = tmp_path / "notes.jsonl"
    notes.write_text("".join(json.dumps({"id": f"c{n}", "text": note_text(n), "codes": ["I10"]}) + "\n" for n in range(4)))
    with FaultServer(Poison("visit 2."), SCRIPT) as server:
        result = run_cli("compile", "--program", "medcoder", "--model", "scripted", "--api-base", server.url,
                         "--retries", "0", "--train", f"jsonl:{notes}", "--dev", f"jsonl:{notes}",
                         "--optimizer", "bootstrap", "--max-demos", "1", "--out", tmp_path / "c.json", "--db", kb_path)
    assert result.exit_code == 0, result.output
    assert "note c2" in result.stderr, "DSPy logs the failing note"
    assert SECRET not in result.output
