"""`python cli.py evaluate --program`: code a dataset through the scripted server and score it
in one step, with the recall after each stage."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "examples"
GOLD = {"diabetes_followup": ["I10", "E11.65", "E78.5"], "knee_injury": ["S83.411A", "S80.211A"]}


def evaluate(*args):
    return CliRunner().invoke(cli, ["evaluate", *map(str, args), "--json"])


@pytest.fixture
def dataset(tmp_path) -> str:
    path = tmp_path / "gold.jsonl"
    lines = [{"id": name, "text": (EXAMPLES / f"{name}.txt").read_text(), "codes": codes} for name, codes in GOLD.items()]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return f"jsonl:{path}"


def test_run_and_score_in_one_step(kb_path, server, dataset, tmp_path):
    out = tmp_path / "preds.jsonl"
    args = ["--dataset", dataset, "--db", kb_path, "--output", out]
    ran = evaluate(*args, "--program", "medcoder", "--model", "scripted", "--api-base", server.url, "--threads", "2")
    assert ran.exit_code == 0, ran.output
    ran = json.loads(ran.stdout)
    assert ran["run"]["written"] == 2 and ran["run"]["output"] == str(out)
    # the scripted extractor names hypertension and diabetes with hyperglycemia whatever the note:
    # in the diabetes note I10 and E11.65, and the rules code the problems it leaves out (E78.5,
    # and E11.42 and E66.9, which this gold lacks); in the knee note its quotes are not found, so
    # the rules' problems are coded: the MCL sprain and the abrasion, both right
    assert (ran["micro"]["recall"], ran["micro"]["precision"]) == (1.0, pytest.approx(5 / 7))

    scored = evaluate(*args[:4], "--predictions", out)
    assert scored.exit_code == 0, scored.output
    scored = json.loads(scored.stdout)
    assert {k: v for k, v in ran.items() if k != "run"} == scored

    retrieve, rerank = ran["stages"]
    assert (retrieve["stage"], rerank["stage"]) == ("retrieve", "rerank")
    # the five codes found were among the retrieved candidates, and the re-ranker kept them
    assert retrieve["code_recall"] == rerank["code_recall"] == 1.0
    assert rerank["code_recall"] == pytest.approx(ran["micro"]["recall"])
    assert rerank["category_recall"] == pytest.approx(ran["category_micro"]["recall"])
    predicted = [len(json.loads(line)["codes"]) for line in out.read_text().splitlines()]
    assert rerank["codes_per_note"] == pytest.approx(sum(predicted) / 2)

    extract, reranked = ran["answers"]
    assert (extract["stage"], extract["calls"], extract["paths"]) == ("extract", 2, {"chat": 2})
    assert reranked["stage"] == "rerank" and reranked["calls"] == sum(predicted) and reranked["parse_failures"] == 0
    assert reranked["constrained"] == reranked["outside"] == reranked["overridden"] == 0

    before = len(server.requests)
    again = evaluate(*args, "--program", "medcoder", "--model", "scripted", "--api-base", server.url)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["run"]["skipped"] == 2 and len(server.requests) == before


def test_table_output_has_the_stage_table(kb_path, server, dataset, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", dataset, "--db", str(kb_path), "--program", "medcoder",
                                      "--model", "scripted", "--api-base", server.url])
    assert result.exit_code == 0, result.output
    assert "Recall after each stage" in result.output and "retrieve" in result.output and "rerank" in result.output
    assert "LM answers per stage" in result.output and "parse failures" in result.output
    [written] = tmp_path.glob("icd-evaluate-*/medcoder.jsonl")
    assert len(written.read_text().splitlines()) == 2
