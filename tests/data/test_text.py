"""Text as editors save it: UTF-8 with or without a byte-order mark, UTF-16 and UTF-32."""

import codecs
import os
from pathlib import Path

import pytest

from data.aci import load_aci
from data.errors import DatasetError
from data.jsonl import load_jsonl
from data.text import Binary, NotText, decode_text, read_text
from programs.errors import NoteError
from programs.guarantees import decode_note

TEXT = "Patient: Sjögren syndrome, café au lait spots.\nPlan: review.\n"


@pytest.mark.parametrize("data", [
    TEXT.encode("utf-8"),
    codecs.BOM_UTF8 + TEXT.encode("utf-8"),
    TEXT.encode("utf-16"),
    TEXT.encode("utf-16-le"),
    TEXT.encode("utf-16-be"),
    TEXT.encode("utf-32"),
], ids=["utf-8", "utf-8 bom", "utf-16 bom", "utf-16-le", "utf-16-be", "utf-32 bom"])
def test_every_unicode_encoding_reads_as_the_same_text(data):
    assert decode_text(data) == TEXT
    assert decode_note(data, "note.txt") == TEXT


def test_latin_1_names_the_byte_and_line():
    with pytest.raises(NotText, match=r"not UTF-8 text \(byte 0xe9 on line 2\)"):
        decode_text("first line\ncaf\xe9\n".encode("latin-1"))


def test_zeros_without_a_utf16_pattern_are_binary():
    with pytest.raises(Binary):
        decode_text(b"\x00\x01\x02\x03PK\x03\x04")
    with pytest.raises(NoteError, match="is binary, not text: give a plain-text clinical note"):
        decode_note(b"PK\x03\x04\x00\x00\x00\x08", "note.docx")


def test_a_bom_jsonl_loads(tmp_path):
    path = tmp_path / "notes.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + b'{"id": "a", "text": "Gout.", "codes": ["M10.9"]}\n')
    assert [r.id for r in load_jsonl(path).records] == ["a"]
    path.write_text('{"id": "a", "text": "Gout.", "codes": []}\n', encoding="utf-16")
    assert [r.text for r in load_jsonl(path).records] == ["Gout."]


def test_a_windows_label_csv_loads_and_a_latin_1_one_is_refused(tmp_path):
    aci = Path(os.environ["ACI_BENCH_DIR"])
    labels = tmp_path / "labels.csv"
    labels.write_bytes(codecs.BOM_UTF8 + "encounter_id,code,diagnosis_mention\r\nD2N068,I10,hypertension\r\n".encode())
    assert [r.codes for r in load_aci(aci, ["valid"], labels=labels).records] == [("I10",)]
    labels.write_bytes("encounter_id,code,diagnosis_mention\nD2N068,I10,h\xe9morragie\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"labels.csv is not UTF-8 text \(byte 0xe9 on line 2\); convert it"):
        load_aci(aci, ["valid"], labels=labels)


def test_an_unreadable_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="cannot read"):
        read_text(tmp_path)
