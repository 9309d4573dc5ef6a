import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import cli
from data.aci import load_aci
from data.errors import DatasetError
from data.records import NoteRecord
from optimizers.retrieval import candidate_recall, fused, kb_retrievers, sentences_of


@pytest.fixture(scope="module")
def mentions(labels_dir) -> list[NoteRecord]:
    dev = load_aci(Path(os.environ["ACI_BENCH_DIR"]), ["dev"], labels=labels_dir / "aci_icd10cm_medcoder_train_valid.csv")
    return list(dev.records[:8])


def test_fused_sentences_rank_codes_found_by_several_sentences_first():
    rankings = {"a": ["X1", "X2"], "b": ["X2", "X3"]}
    assert fused(lambda text, k: rankings[text][:k], ["a", "b"], 3) == ["X2", "X1", "X3"]
    assert sentences_of("Chest pain. It radiates!\nDx: angina") == ["Chest pain.", "It radiates!", "Dx: angina"]


def test_recall_on_real_mentions_with_the_knowledge_base(kb, mentions):
    report = candidate_recall(mentions, kb_retrievers(kb), mode="mentions", ks=[1, 10, 50])
    assert report.queries == sum(len(r.mentions) for r in mentions) >= 12
    by_name = {r.retriever: r for r in report.recalls}
    assert set(by_name) == {"tabular", "index", "all", "navigation"}
    for recall in report.recalls:
        assert recall.code[1] <= recall.code[10] <= recall.code[50]
        assert all(recall.code[k] <= recall.category[k] for k in (1, 10, 50))
    assert by_name["all"].code[50] >= 0.5
    assert by_name["all"].category[10] >= 0.6
    hypothyroidism = next(d for d in report.details if d.query.text == "Hypothyroidism")
    assert hypothyroidism.ranks["all"][0] is not None


def test_notes_mode_needs_gold_codes(kb):
    with pytest.raises(DatasetError, match="--labels"):
        candidate_recall([NoteRecord("n", "text", ())], kb_retrievers(kb, ["tabular"]), mode="notes")
    with pytest.raises(DatasetError, match="unknown retriever"):
        kb_retrievers(kb, ["bm25"])


def test_retrieval_eval_cli(kb_path, tmp_path):
    dataset = tmp_path / "mentions.jsonl"
    note = "Assessment: type 2 diabetes mellitus without complications; essential hypertension."
    record = {"id": "n1", "text": note, "codes": ["E11.9", "I10"], "mentions": [{"phrase": "type 2 diabetes mellitus without complications", "code": "E11.9"}, {"phrase": "essential hypertension", "code": "I10"}]}
    dataset.write_text(json.dumps(record) + "\n")
    args = ["retrieval-eval", "--dataset", f"jsonl:{dataset}", "--k", "1,10", "--db", str(kb_path)]
    result = CliRunner().invoke(cli, [*args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["queries"] == 2 and payload["recall"]["all"]["code"]["10"] == 1.0
    result = CliRunner().invoke(cli, [*args, "--mode", "notes", "--sentences", "--retrievers", "all"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    output = " ".join(result.stdout.split())  # rich wraps the title
    assert "(sentences fused)" in output and "@10" in output and "category" in output
    result = CliRunner().invoke(cli, [*args[:-2], "--k", "ten", "--db", str(kb_path)])
    assert result.exit_code == 1 and "--k" in result.output
