"""The review kept in --out: saved at once and atomically, resumed on restart, no decision lost
between tabs or app processes; the file is a jsonl: dataset that evaluate and compile read."""

import json
import os
import threading

import pytest

from data.jsonl import load_jsonl
from data.specs import load_dataset
from review import model
from review.codes import CodeBook
from review.errors import Conflict, ReviewError
from review.predictions import read_predictions
from review.store import ReviewStore


@pytest.fixture(scope="module")
def dataset(notes_file):
    return load_dataset(f"jsonl:{notes_file}")


@pytest.fixture(scope="module")
def predicted(dataset, predictions_file):
    found, unknown = read_predictions(predictions_file, {r.id: r.text for r in dataset.records})
    assert unknown == []
    return found


@pytest.fixture
def open_store(dataset, predicted, kb, tmp_path):
    def make(out=tmp_path / "reviewed.jsonl", reviewer="ann"):
        return ReviewStore(dataset.records, predicted, out, CodeBook(kb), reviewer)
    return make


def index_of(store, note_id):
    return store.position[note_id]


def test_predictions_of_a_real_run_become_suggestions_with_spans_and_trace(dataset, predicted):
    diabetes = predicted["diabetes_followup"]
    text = dataset.records[[r.id for r in dataset.records].index("diabetes_followup")].text
    assert diabetes.program == "medcoder" and [s.code for s in diabetes.suggestions] == ["E11.65", "E66.9", "E78.5", "I10"]
    for item in diabetes.suggestions:
        assert item.description and item.spans
    assert [text[s.start:s.end] for s in diabetes.suggestions[3].spans] == ["Essential hypertension, above goal."]
    assert [stage.stage for stage in diabetes.trace] == ["extract", "retrieve", "rerank"]


def test_plain_prediction_lines_and_bad_files(tmp_path):
    texts = {"a": "Hypertension.", "b": "Asthma."}
    path = tmp_path / "preds.jsonl"
    path.write_text(json.dumps({"id": "a", "codes": ["i10"], "evidence": [{"code": "I10", "start": 0, "end": 12}]}) + "\n"
                    + json.dumps({"id": "zz", "codes": []}) + "\n")
    found, unknown = read_predictions(path, texts)
    assert found["a"].suggestions[0].code == "I10" and found["a"].suggestions[0].spans == (model.Span(0, 12),)
    assert unknown == ["zz"]
    path.write_text('{"id": "a", "codes": ["I10"]}\n{"id": "a", "codes": []}\n')
    with pytest.raises(ReviewError, match=r"preds.jsonl:2: duplicate prediction"):
        read_predictions(path, texts)
    path.write_text('{"id": "a", "codes": "I10"}\n')
    with pytest.raises(ReviewError, match="must be a list"):
        read_predictions(path, texts)
    with pytest.raises(ReviewError, match="not found"):
        read_predictions(tmp_path / "missing.jsonl", texts)


def test_every_decision_is_on_disk_at_once_and_a_restart_continues(open_store, tmp_path):
    store = open_store()
    n = index_of(store, "diabetes_followup")
    store.decide(n, 0, model.ACCEPTED, seen="pending")
    line = json.loads((tmp_path / "reviewed.jsonl").read_text())
    assert line["codes"] == ["E11.65"] and line["review"]["status"] == "in progress"
    assert line["review"]["reviewer"] == "ann" and line["review"]["decisions"][0]["time"]
    store.decide(n, 1, model.REJECTED, seen="pending", reason="BMI 31 only")
    store.decide(n, 2, model.REPLACED, seen="pending", replacement="e78.00")
    store.add(n, "E11.3293", *span_of(store, n, "mild nonproliferative diabetic retinopathy"))

    again = open_store(reviewer="bob")
    resumed = again.note(n)
    assert resumed == store.note(n)
    assert resumed.pending == ["I10"] and again.progress() == (0, 4)
    again.decide(n, 3, model.ACCEPTED, seen="pending")
    again.mark_done(n)
    assert again.progress() == (1, 4) and store.progress() == (1, 4)
    saved = json.loads((tmp_path / "reviewed.jsonl").read_text())
    assert saved["codes"] == ["E11.65", "E78.00", "I10", "E11.3293"]
    assert saved["review"]["reviewer"] == "bob" and saved["review"]["decisions"][0]["reviewer"] == "ann"
    assert not list(tmp_path.glob(".reviewed.jsonl.*.tmp"))


def span_of(store, n, words):
    start = store.record(n).text.index(words)
    return start, start + len(words)


def test_replace_and_add_take_billable_codes_only(open_store):
    store = open_store()
    n = index_of(store, "diabetes_followup")
    with pytest.raises(ReviewError, match=r"E11 is not billable .*e\.g\. E11\.8"):
        store.decide(n, 0, model.REPLACED, seen="pending", replacement="E11")
    with pytest.raises(ReviewError, match="not an ICD-10-CM code"):
        store.add(n, "hypertension", 0, 5)
    with pytest.raises(ReviewError, match="not a code of"):
        store.add(n, "E11.99", 0, 5)
    assert not store.note(n).touched and not store.out.exists()


def test_two_tabs_and_two_app_processes_lose_no_decision(open_store, tmp_path):
    first, second = open_store(), open_store(reviewer="bob")
    n = index_of(first, "diabetes_followup")
    first.decide(n, 0, model.ACCEPTED, seen="pending")
    second.decide(n, 1, model.REJECTED, seen="pending")        # reads the first one's decision, keeps it
    with pytest.raises(Conflict):
        first.decide(n, 1, model.ACCEPTED, seen="pending")     # a stale page: refused, not overwritten
    assert {c: d.verdict for c, d in first.note(n).decisions.items()} == {"E11.65": "accepted", "E66.9": "rejected"}

    # many writers at once, half through each store: every added code is kept
    text = first.record(n).text
    words = [(m.start(), m.end()) for m in __import__("re").finditer(r"[A-Za-z]{4,}", text)][:24]
    errors = []

    def add(store, start, end):
        try:
            store.add(n, "R69", start, end)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=((first, second)[i % 2], s, e)) for i, (s, e) in enumerate(words)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(open_store().note(n).added) == len(words) == 24


def test_a_failed_write_leaves_the_file_as_it_was(open_store, monkeypatch, tmp_path):
    store = open_store()
    n = index_of(store, "diabetes_followup")
    store.decide(n, 0, model.ACCEPTED, seen="pending")
    before = (tmp_path / "reviewed.jsonl").read_bytes()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        store.decide(n, 1, model.ACCEPTED, seen="pending")
    assert (tmp_path / "reviewed.jsonl").read_bytes() == before
    assert not list(tmp_path.glob(".reviewed.jsonl.*.tmp"))


def test_lines_of_other_notes_are_kept_and_bad_files_are_refused(open_store, tmp_path):
    out = tmp_path / "reviewed.jsonl"
    foreign = {"id": "other-note", "text": "Asthma.", "codes": ["J45.909"]}
    out.write_text(json.dumps(foreign) + "\n")
    store = open_store()
    store.decide(index_of(store, "diabetes_followup"), 0, model.ACCEPTED, seen="pending")
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["diabetes_followup", "other-note"]
    out.write_text(out.read_text() + "{broken\n")
    with pytest.raises(ReviewError, match=r"reviewed.jsonl:3: malformed JSON.*another --out"):
        open_store()
    line = json.loads(out.read_text().splitlines()[0])
    line["text"] = line["text"].replace("Hypertension", "Hypotension")
    out.write_text(json.dumps(line) + "\n")
    with pytest.raises(ReviewError, match="another text than in the dataset"):
        open_store()


def test_the_file_is_a_dataset_only_with_finished_notes(open_store, tmp_path):
    store = open_store()
    diabetes, html = index_of(store, "diabetes_followup"), index_of(store, "html-note")
    for i in range(4):
        store.decide(diabetes, i, model.ACCEPTED, seen="pending")
    store.mark_done(diabetes)
    store.decide(html, 0, model.REJECTED, seen="pending")
    loaded = load_jsonl(tmp_path / "reviewed.jsonl")
    assert [r.id for r in loaded.records] == ["diabetes_followup"]
    assert loaded.records[0].codes == ("E11.65", "E66.9", "E78.5", "I10")
    assert loaded.report.remarks == ("1 notes still under review left out (review status 'in progress')",)


def test_predictions_of_the_no_lm_floor_are_reviewable(dataset, notes_file, kb_path, tmp_path):
    from click.testing import CliRunner

    from cli import cli

    out = tmp_path / "floor.jsonl"
    result = CliRunner().invoke(cli, ["predict", "--input", f"jsonl:{notes_file}", "--output", str(out),
                                      "--program", "medcoder", "--model", "none", "--db", str(kb_path), "--json"])
    assert result.exit_code == 0, result.output
    found, _ = read_predictions(out, {r.id: r.text for r in dataset.records})
    diabetes = found["diabetes_followup"]
    assert {"I10", "E78.5"} <= {s.code for s in diabetes.suggestions}
    assert all(s.spans for s in diabetes.suggestions) and diabetes.trace
