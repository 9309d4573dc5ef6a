import os
from pathlib import Path

import pytest

from data.aci import load_aci
from data.errors import DatasetError
from data.specs import load_dataset, parse_spec


@pytest.fixture(scope="module")
def aci_dir() -> Path:
    return Path(os.environ["ACI_BENCH_DIR"])


@pytest.fixture(scope="module")
def medcoder(labels_dir) -> Path:
    return labels_dir / "aci_icd10cm_medcoder_train_valid.csv"


def test_splits_without_labels_keep_every_note(aci_dir):
    assert len(load_aci(aci_dir, ["train"])) == 67
    assert len(load_aci(aci_dir, ["valid"])) == 20
    test = load_aci(aci_dir, ["test"])
    assert len(test) == 120 and test.records[0].id == "D2N088" and test.records[-1].id == "D2N207"
    assert test.records[0].codes == () and "no labels" in test.report.remarks[0]


def test_medcoder_labels_give_mentions_and_flag_malformed_codes(aci_dir, medcoder):
    dev = load_aci(aci_dir, ["dev"], labels=medcoder)
    assert len(dev) == 67
    assert sum(len(r.mentions) for r in dev) == 112
    assert any("20 notes without labels" in remark for remark in dev.report.remarks)
    d2n002 = next(r for r in dev if r.id == "D2N002")
    assert d2n002.codes == ("E03.9", "M17.11", "Z94.0")
    assert d2n002.mentions[2].phrase == "Status post renal transplant" and d2n002.mentions[2].code == "Z94.0"
    # no knowledge base: only the malformed code can be flagged, and it is kept as given
    assert [(f.note_id, f.code, f.reason) for f in dev.report.flagged] == [("D2N078", "834.11A", "malformed")]
    assert "834.11A" in next(r for r in dev if r.id == "D2N078").codes


def test_yuan_labels_load_with_descriptions_not_mentions(aci_dir, labels_dir):
    dev = load_dataset("aci:train+valid", aci_dir=aci_dir, labels=labels_dir / "aci_icd10cm_yuan2025_train_valid.csv")
    assert len(dev) == 67 and dev.report.codes == 140
    assert all(not r.mentions for r in dev)
    assert dev.name == "aci:train+valid"


def test_knowledge_base_flags_codes_it_does_not_bill(aci_dir, medcoder, kb):
    dev = load_aci(aci_dir, ["dev"], labels=medcoder, validator=kb)
    flagged = {f.code: f for f in dev.report.flagged}
    assert {"S83.91A", "834.11A"} <= set(flagged)
    assert flagged["S83.91A"].note_id == "D2N045"
    assert "S83.91A" in next(r for r in dev if r.id == "D2N045").codes
    assert dev.report.validated


def test_spec_errors_name_what_to_fix(aci_dir, tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset"):
        parse_spec("aci")
    with pytest.raises(DatasetError, match="unknown dataset"):
        parse_spec("mimic:train")
    with pytest.raises(DatasetError, match="unknown ACI-BENCH split 'tran'"):
        parse_spec("aci:tran")
    with pytest.raises(DatasetError, match="ACI_BENCH_DIR"):
        load_dataset("aci:train")
    with pytest.raises(DatasetError, match="ACI-BENCH folder not found"):
        load_dataset("aci:train", aci_dir=tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"clef_taskC_test3\.csv"):
        load_dataset("aci:test3", aci_dir=tmp_path)
    with pytest.raises(DatasetError, match="labels file not found"):
        load_dataset("aci:train", aci_dir=aci_dir, labels=tmp_path / "labels.csv")


def test_malformed_csv_names_file_and_line(aci_dir, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("encounter_id,code\nD2N001,I10\nD2N002,\n")
    with pytest.raises(DatasetError, match=r"labels\.csv:3: empty"):
        load_aci(aci_dir, ["train"], labels=labels)
    labels.write_text("encounter,icd\nD2N001,I10\n")
    with pytest.raises(DatasetError, match="needs columns encounter_id and code"):
        load_aci(aci_dir, ["train"], labels=labels)
    (tmp_path / "train.csv").write_text('dataset,encounter_id,dialogue,note\naci,D2N001,"hi","note\n')
    with pytest.raises(DatasetError, match=r"train\.csv:\d+: malformed CSV"):
        load_aci(tmp_path, ["train"])
