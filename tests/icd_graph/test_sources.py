import gzip
import zipfile
from pathlib import Path

import pytest

from icd_graph.errors import SourceError
from icd_graph.sources import default_source, open_sources

TABULAR = "icd10c-tabular-April-1-2026.xml.gz"
EINDEX = "icd10cm-eindex-April-2025.xml.gz"
INDEX_CSV = "ICD10CM_2025_Index.DERIVED.csv.gz"

TINY_INDEX = b"""<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.index>
  <version>2025</version>
  <title>ICD-10-CM INDEX TO DISEASES and INJURIES</title>
  <letter><title>A</title><mainTerm><title>Abasia</title><code>F44.4</code></mainTerm></letter>
</ICD10CM.index>
"""


def linked(folder: Path, source: Path, *names: str) -> Path:
    """A folder of symbolic links to real source files (no data copied)."""
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).symlink_to(source / name)
    return folder


def test_folder_files_are_recognised_by_content(icd_source):
    with open_sources(icd_source) as sources:
        kinds = {kind: file.version for kind, file in sources.files.items()}
    assert kinds == {"tabular": "2026", "eindex": "2025", "neoplasm": "2025", "drug": "2025", "index_csv": None}


def test_zip_members_plain_gzipped_and_renamed(icd_source, tmp_path):
    archive = tmp_path / "cdc.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("icd10cm/tabular.xml", gzip.decompress((icd_source / TABULAR).read_bytes()))
        zf.write(icd_source / EINDEX, "icd10cm/misnamed-table.xml.gz")
        zf.writestr("icd10cm/README.txt", "not a source")
        zf.writestr("icd10cm/schema.xsd", "<xsd:schema/>")
    with open_sources(icd_source) as folder:
        expected = {kind: file.sha256 for kind, file in folder.files.items()}
    with open_sources(archive) as sources:
        assert set(sources.files) == {"tabular", "eindex"}
        extracted = sources.tabular.path
        assert extracted.exists() and sources.tabular.name == f"{archive}:icd10cm/tabular.xml"
        assert sources.tabular.sha256 == expected["tabular"]
        assert sources.get("eindex").sha256 == expected["eindex"]
    assert not extracted.exists()


def test_single_gzipped_file(icd_source):
    with open_sources(icd_source / TABULAR) as sources:
        assert list(sources.files) == ["tabular"]


def test_default_source_is_the_tabular_shipped_with_simple_icd_10_cm():
    with open_sources(None) as sources:
        assert list(sources.files) == ["tabular"]
        assert sources.tabular.version == "2026"
        assert Path(sources.tabular.name).parent == default_source()


def test_index_xml_is_preferred_over_the_csv(icd_source, tmp_path):
    folder = linked(tmp_path / "src", icd_source, TABULAR, INDEX_CSV)
    (folder / "icd10cm-index-2025.xml").write_bytes(TINY_INDEX)
    with open_sources(folder) as sources:
        assert "index" in sources.files and "index_csv" not in sources.files
        assert any(INDEX_CSV in name for name in sources.ignored)


@pytest.mark.parametrize(
    "name, content",
    [
        ("garbage.xml", b"hello, not XML"),
        ("broken.xml.gz", b"\x1f\x8b\x08\x00 this is no gzip stream"),
        ("truncated.csv.gz", gzip.compress(b"RowID,Letter,Level,Term")[:-12]),
    ],
    ids=["not-xml", "bad-gzip", "truncated-gzip"],
)
def test_unreadable_file_raises_source_error_naming_it(icd_source, tmp_path, name, content):
    folder = linked(tmp_path / "src", icd_source, TABULAR)
    (folder / name).write_bytes(content)
    with pytest.raises(SourceError, match=name):
        with open_sources(folder):
            pass


def test_source_without_tabular(icd_source, tmp_path):
    folder = linked(tmp_path / "src", icd_source, EINDEX)
    with pytest.raises(SourceError, match="no tabular XML"):
        with open_sources(folder):
            pass


def test_two_files_of_one_kind(icd_source, tmp_path):
    folder = linked(tmp_path / "src", icd_source, TABULAR)
    (folder / "other.xml").write_bytes(b"<?xml version='1.0'?>\n<ICD10CM.tabular><version>2025</version></ICD10CM.tabular>")
    with pytest.raises(SourceError, match="two tabular files") as error:
        with open_sources(folder):
            pass
    assert "other.xml" in str(error.value) and TABULAR in str(error.value)


def test_missing_source_and_bad_zip(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        with open_sources(tmp_path / "nowhere"):
            pass
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK not really")
    with pytest.raises(SourceError, match="bad.zip"):
        with open_sources(bad):
            pass
