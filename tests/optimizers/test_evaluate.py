import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from data.records import Evidence, NoteRecord
from optimizers.evaluate import evaluate, read_predictions

TEXT = "Type 2 diabetes without complications. Hypertension noted."


def write_lines(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.fixture
def dataset(tmp_path) -> Path:
    return write_lines(
        tmp_path / "gold.jsonl",
        [
            {"id": "n1", "text": TEXT, "codes": ["E11.9", "I10"], "evidence": [{"code": "E11.9", "start": 0, "end": 15}]},
            {"id": "n2", "text": "Asthma.", "codes": ["J45.909"]},
            {"id": "n3", "text": "Knee pain.", "codes": ["M25.561"]},
        ],
    )


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_evaluate_json_has_every_metric_and_counts_missing_and_unknown(dataset, kb_path, tmp_path):
    predictions = write_lines(
        tmp_path / "preds.jsonl",
        [
            {"id": "n1", "codes": ["e119", "E11.65"], "evidence": [{"code": "E11.9", "start": 5, "end": 23}]},
            {"id": "n2", "codes": ["J45.909"], "result": {"program": "x"}},
            {"id": "zz", "codes": ["I10"]},
        ],
    )
    result = run("evaluate", "--dataset", f"jsonl:{dataset}", "--predictions", str(predictions), "--db", str(kb_path), "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    # tp 2 (E11.9, J45.909), fp 1 (E11.65), fn 2 (I10, M25.561)
    assert payload["micro"] == pytest.approx({"precision": 2 / 3, "recall": 1 / 2, "f1": 4 / 7})
    assert payload["macro"]["f1"] == pytest.approx(2 / 5)
    assert payload["category_micro"]["f1"] == pytest.approx(2 / 3)
    assert payload["exact_match"] == pytest.approx(1 / 3)
    assert payload["evidence"]["f1"] == pytest.approx(2 / 3)
    assert payload["missing_predictions"] == ["n3"] and payload["unknown_ids"] == ["zz"]
    assert [n["id"] for n in payload["per_note"]] == ["n1", "n2", "n3"]
    assert payload["load_report"]["validated"] is True


def test_evaluate_table_on_aci_with_labels(labels_dir, kb_path, tmp_path):
    labels = labels_dir / "aci_icd10cm_yuan2025_train_valid.csv"
    rows = {}
    for line in labels.read_text().splitlines()[1:]:
        encounter = line.split(",")[0]
        rows.setdefault(encounter, []).append(line.split(",")[2])
    predictions = write_lines(tmp_path / "preds.jsonl", [{"id": e, "codes": c} for e, c in list(rows.items())[1:]])
    result = run("evaluate", "--dataset", "aci:dev", "--labels", str(labels), "--predictions", str(predictions), "--db", str(kb_path))
    assert result.exit_code == 0, result.output
    assert "codes, micro" in result.stdout and "exact match 0.985" in result.stdout
    assert "1 notes without a prediction" in result.stdout


def test_evaluate_errors_are_one_line(dataset, tmp_path):
    predictions = tmp_path / "preds.jsonl"
    predictions.write_text('{"id": "n1", "codes": ["I10"]}\n{"id": "n2", "codes": "I10"}\n')
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", f"jsonl:{dataset}", "--predictions", str(predictions)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())  # rich wraps long lines
    assert 'preds.jsonl:2: "codes" must be a list of strings' in output
    assert "Traceback" not in output
    result = CliRunner().invoke(cli, ["evaluate", "--dataset", "aci:dev", "--predictions", str(predictions)])
    assert result.exit_code == 1 and "--labels" in result.output


def test_evidence_from_a_program_result(tmp_path):
    result = {"codes": [{"code": "E11.9", "evidence": [{"quote": "Type 2 diabetes", "span": {"start": 0, "end": 15, "text": "Type 2 diabetes"}, "match": "exact"}, {"quote": "sugar", "span": None, "match": "none"}]}]}
    predictions, flagged = read_predictions(write_lines(tmp_path / "p.jsonl", [{"id": "n1", "codes": ["E11.9", "834.11A"], "result": result}]))
    assert predictions[0].evidence == (Evidence("E11.9", 0, 15),)
    assert [(f.code, f.reason) for f in flagged] == [("834.11A", "malformed")]
    scored = evaluate([NoteRecord("n1", TEXT, ("E11.9",), (Evidence("E11.9", 0, 15),))], predictions)
    assert scored.scores.evidence.f1 == 1.0 and scored.scores.micro.precision == 0.5


def coded(trace: list[tuple[str, list[str] | None]]) -> dict:
    """A CodingResult dict whose final codes are the last stage's."""
    from programs.result import CodedDiagnosis, CodingResult, StageTrace

    final = trace[-1][1] or []
    return CodingResult("hand", [CodedDiagnosis(c, "", (), "") for c in final], [StageTrace(s, codes=c) for s, c in trace]).to_dict()


def test_stage_recall_on_hand_made_traces(tmp_path):
    from optimizers.evaluate import read_results, stage_recall

    records = [NoteRecord("n1", TEXT, ("E11.9", "I10")), NoteRecord("n2", "Asthma.", ("J45.909",)), NoteRecord("n3", "Knee pain.", ("M25.561",))]
    predictions = write_lines(
        tmp_path / "preds.jsonl",
        [
            {"id": "n1", "codes": ["E11.9"], "result": coded([("extract", None), ("retrieve", ["E11.9", "E11.65", "I10", "I11.9"]), ("rerank", ["e119"])])},
            {"id": "n2", "codes": ["J45.20"], "result": coded([("extract", None), ("retrieve", ["J45.20", "J45.909"]), ("rerank", ["J45.20"])])},
        ],
    )
    rows = [row.as_dict() for row in stage_recall(records, read_results(predictions))]
    # n3 has no result: its gold code counts as missed at every stage
    assert [row["stage"] for row in rows] == ["retrieve", "rerank"]
    assert rows[0] == pytest.approx({"stage": "retrieve", "code_recall": 3 / 4, "category_recall": 3 / 4, "codes_per_note": 2.0})
    assert rows[1] == pytest.approx({"stage": "rerank", "code_recall": 1 / 4, "category_recall": 2 / 4, "codes_per_note": 2 / 3})


def test_results_without_stage_codes_still_load(tmp_path):
    from optimizers.evaluate import read_results, stage_recall

    old = coded([("extract", None), ("assign", ["I10"])])
    for stage in old["trace"]:
        del stage["codes"]
    predictions = write_lines(tmp_path / "preds.jsonl", [{"id": "n1", "codes": ["I10"], "result": old}])
    results = read_results(predictions)
    assert results["n1"].code_list == ["I10"] and [s.codes for s in results["n1"].trace] == [None, None]
    assert stage_recall([NoteRecord("n1", TEXT, ("I10",))], results) == []


def test_predictions_and_program_are_exclusive(dataset, tmp_path):
    predictions = write_lines(tmp_path / "preds.jsonl", [{"id": "n1", "codes": ["I10"]}])
    for extra in ([], ["--predictions", str(predictions), "--program", "medcoder"]):
        result = run("evaluate", "--dataset", f"jsonl:{dataset}", *extra)
        assert result.exit_code == 1
        assert result.output.startswith("error: give either --predictions") and result.output.count("\n") == 1
