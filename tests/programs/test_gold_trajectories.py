"""Gold trajectories on the real ACI-BENCH notes and labels, and MDACE without MIMIC-III text."""

import json
import os
from pathlib import Path

import pytest

from data.chat import check_record, replay
from data.specs import load_dataset
from programs.gold_trajectories import OFFSETS_USER, documented, write_gold
from tests.data.test_mdace import annotated_notes, write_noteevents

LABEL_SETS = {"medcoder": "aci_icd10cm_medcoder_train_valid.csv", "yuan2025": "aci_icd10cm_yuan2025_train_valid.csv"}
META = {"source": "gold"}


@pytest.fixture(scope="module")
def built(kb, labels_dir, tmp_path_factory):
    """Gold trajectories of aci:train+dev with each label set: (records, summary, notes by id)."""
    out = tmp_path_factory.mktemp("gold")
    result = {}
    for name, file_name in LABEL_SETS.items():
        dataset = load_dataset("aci:train+dev", aci_dir=Path(os.environ["ACI_BENCH_DIR"]), labels=labels_dir / file_name, validator=kb)
        summary = write_gold(dataset.records, kb, out / f"{name}.jsonl", META)
        records = [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]
        result[name] = (records, summary, {r.id: r for r in dataset.records})
    return result


@pytest.mark.parametrize("labels", LABEL_SETS)
def test_a_trajectory_for_95_percent_of_the_gold_codes_the_release_has(built, labels):
    records, summary, _ = built[labels]
    assert summary.notes == len(records) == 67
    assert summary.in_release == {"medcoder": 108, "yuan2025": 140}[labels]
    assert summary.coverage >= 0.95, summary.missed
    assert summary.settled == sum(len(r["codes"]) for r in records)
    assert sum(summary.routes.values()) == summary.settled


@pytest.mark.parametrize("labels", LABEL_SETS)
def test_every_record_is_valid_chat_and_every_tool_call_replays(built, kb, labels):
    records, _, _ = built[labels]
    calls = 0
    for record in records:
        assert check_record(record) == [], record["id"]
        assert replay(record, kb) == []
        calls += sum(len(m.get("tool_calls") or ()) for m in record["messages"])
    assert calls > 3 * len(records)


@pytest.mark.parametrize("labels", LABEL_SETS)
def test_each_code_is_reached_through_real_results_and_quotes_the_note(built, labels):
    records, _, notes = built[labels]
    for record in records:
        text = notes[record["id"]].text
        assert record["messages"][1]["content"].endswith(text)
        assert json.loads(record["messages"][-1]["content"]) == {"codes": record["codes"]}
        for item in record["codes"]:
            for evidence in item["evidence"]:
                assert text[evidence["start"] : evidence["end"]] == evidence["text"] and evidence["text"].strip()
            results_before_show = []
            for message in record["messages"]:
                calls = message.get("tool_calls") or ()
                if any(c["function"]["name"] == "show" and json.loads(c["function"]["arguments"])["code"] == item["code"] for c in calls):
                    break
                if message["role"] == "tool":
                    results_before_show.append(message["content"])
            else:
                pytest.fail(f"{record['id']}: {item['code']} is never opened")
            assert any(f'"{item["code"]}"' in content for content in results_before_show), (record["id"], item["code"])


def test_medcoder_mentions_are_the_evidence(built):
    records, _, notes = built["medcoder"]
    mentions = {(r.id, m.code): m.phrase.lower() for r in notes.values() for m in r.mentions}
    quoted = [(r["id"], c["code"], c["evidence"][0]["text"].lower()) for r in records for c in r["codes"]]
    assert sum(mentions.get((i, code)) == text for i, code, text in quoted) >= 0.9 * len(quoted)


def test_evidence_is_read_in_the_words_of_the_index(kb):
    note = ("CHIEF COMPLAINT\n\nSore throat.\n\nASSESSMENT\n\nHe slipped on the ice and fell. Blood pressure is high. "
            "CT shows a 3 cm left ovarian mass.")

    def evidence(code):
        found = documented(note, kb.index_paths(code), kb.require(code).description)
        return found and note[found[0] : found[1]]

    assert evidence("J02.9") == "Sore throat"  # 'Ulcer, ..., sore throat': two words of an entry
    assert evidence("W00.0XXA") == "slipped on the ice and fell"  # 'slipped', 'fell' read as 'slipping', 'fall'
    assert evidence("C56.2") == "left ovarian"  # 'ovarian' read as 'Neoplasm, ovary'
    assert evidence("E11.9") is None


def test_hugging_face_datasets_reads_the_files(built, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    files = [str(summary.output) for _, summary, _ in built.values()]
    loaded = datasets.load_dataset("json", data_files=files, split="train", cache_dir=str(tmp_path / "hf"))
    assert loaded.num_rows == 134
    row = loaded[0]
    assert [m["role"] for m in row["messages"]][:3] == ["system", "user", "assistant"]
    assert {t["function"]["name"] for t in row["tools"]} >= {"search", "index_lookup", "show"}
    call = next(m for m in row["messages"] if m.get("tool_calls"))["tool_calls"][0]
    assert json.loads(call["function"]["arguments"])


def test_mdace_without_the_notes_writes_no_text(kb, tmp_path):
    mdace = Path(os.environ["MDACE_DIR"])
    spans = annotated_notes(mdace, "val", "Profee")
    texts = {note_id: ("mimictext " * (max(s["end"] for s in found) // 10 + 5)) for note_id, found in spans.items()}
    write_noteevents(tmp_path / "NOTEEVENTS.csv", texts)
    offsets = load_dataset("mdace:val:profee", mdace_dir=mdace, validator=kb, offsets_only=True)
    with_notes = load_dataset("mdace:val:profee", mdace_dir=mdace, validator=kb, mimic_notes=tmp_path / "NOTEEVENTS.csv")
    write_gold(offsets.records, kb, tmp_path / "offsets.jsonl", META, with_text=False)
    write_gold(with_notes.records[:3], kb, tmp_path / "text.jsonl", META)
    assert "mimictext" in (tmp_path / "text.jsonl").read_text()  # the check below can see text
    written = (tmp_path / "offsets.jsonl").read_text()
    assert "mimictext" not in written
    records = [json.loads(line) for line in written.splitlines()]
    assert len(records) == len(spans)
    for record in records:
        assert record["messages"][1]["content"] == OFFSETS_USER.format(id=record["id"])
        assert check_record(record) == [] and replay(record, kb) == []
        gold_spans = {(s["code"], s["begin"], s["end"]) for s in spans[record["id"]]}
        for item in record["codes"]:
            for evidence in item["evidence"]:
                assert evidence["text"] == ""
                if item["code"] in record["gold"]:
                    assert (item["code"], evidence["start"], evidence["end"]) in gold_spans
