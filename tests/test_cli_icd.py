import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def icd(*args, db):
    env = {**os.environ, "ICD_DB": str(db)}
    return subprocess.run([sys.executable, "cli.py", "icd", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_show_json_and_table(kb_path):
    result = icd("show", "e119", "--json", db=kb_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["code"] == "E11.9" and payload["billable"]
    assert any(n["kind"] == "use_additional_code" and n["source"] == "E11" for n in payload["notes"])
    assert "(from E11)" in icd("show", "E11.9", db=kb_path).stdout


def test_expand_search_index_validate(kb_path):
    siblings = json.loads(icd("expand", "E11.9", "--kind", "siblings", "--json", db=kb_path).stdout)
    assert "E11.8" in [s["code"] for s in siblings]
    hits = json.loads(icd("search", "type 2 diabetes with retinopathy", "--k", "10", "--json", db=kb_path).stdout)
    assert any(h["code"].startswith("E11.31") for h in hits)
    assert icd("search", "the of", db=kb_path).stdout.strip() == "nothing matches 'the of'"
    assert len(json.loads(icd("search", "asthma", "-k", "3", "--json", db=kb_path).stdout)) == 3
    entries = json.loads(icd("index", "Diabetes", "type 2", "with", "retinopathy", "--json", db=kb_path).stdout)
    assert entries[0]["billable_codes"] == ["E11.319"]
    external = json.loads(icd("index", "Fall", "--index", "eindex", "--limit", "2", "--json", db=kb_path).stdout)
    assert [e["source"] for e in external] == ["eindex", "eindex"] and external[0]["code"] == "W19"
    ok = icd("validate", "E11.9", "I10", "--json", db=kb_path)
    assert ok.returncode == 0
    bad = icd("validate", "E11", "E11.9", "--json", db=kb_path)
    assert bad.returncode == 1 and "E11.9" in json.loads(bad.stdout)[0]["completions"]


def test_table_json_and_no_row(kb_path):
    rows = json.loads(icd("table", "neoplasm", "pituitary", "--json", db=kb_path).stdout)
    assert rows[0]["path"] == "Neoplasm, neoplastic, pituitary"
    assert ["Benign", "D35.2", ["D35.2"]] in rows[0]["cells"]
    missing = icd("table", "drug", "unobtainium", db=kb_path)
    assert missing.returncode == 0 and "no row of the drug table" in missing.stdout


def test_bad_input_is_one_message_without_traceback(kb_path, tmp_path):
    for args, db, expected in (
        (("show", "U99.99"), kb_path, "U99.99"),
        (("show", "12345"), kb_path, "not an ICD-10-CM code"),
        (("show", "E11.9"), tmp_path / "missing.duckdb", "icd build"),
    ):
        result = icd(*args, db=db)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr and expected in " ".join(result.stderr.split())
        assert result.stderr.strip().startswith("error:")
