import json

import pytest

from programs.errors import BatchError
from programs.predictions import finished_ids


def lines(*ids):
    return "".join(json.dumps({"id": i, "codes": [], "result": {}}) + "\n" for i in ids)


def test_missing_output_has_nothing_done(tmp_path):
    assert finished_ids(tmp_path / "none.jsonl") == set()


def test_truncated_last_line_is_cut_off(tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_text(lines("a", "b") + '{"id": "c", "co')
    assert finished_ids(out) == {"a", "b"}
    assert out.read_text() == lines("a", "b")


def test_complete_last_line_without_newline_is_kept(tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_text(lines("a", "b").rstrip("\n"))
    assert finished_ids(out) == {"a", "b"}
    assert out.read_text() == lines("a", "b")


def test_malformed_middle_line_is_an_error(tmp_path):
    out = tmp_path / "preds.jsonl"
    out.write_text(lines("a") + "garbage\n" + lines("b"))
    with pytest.raises(BatchError, match=r"preds.jsonl:2"):
        finished_ids(out)
