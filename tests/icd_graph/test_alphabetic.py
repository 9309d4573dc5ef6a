import gzip
import os
from pathlib import Path

import pytest

from icd_graph.alphabetic import TermRow, read_index_csv, read_index_xml
from icd_graph.errors import SourceError

SOURCE = Path(os.environ["ICD10CM_SOURCE"])

OFFICIAL_INDEX = """<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.index>
  <version>2025</version>
  <title>ICD-10-CM INDEX TO DISEASES and INJURIES</title>
  <letter>
    <title>A</title>
    <mainTerm>
      <title>Abasia<nemod>(-astasia) (hysterical)</nemod></title>
      <code>F44.4</code>
    </mainTerm>
    <mainTerm>
      <title>Abdominalgia</title>
      <see>Pain, abdominal</see>
    </mainTerm>
  </letter>
  <letter>
    <title>D</title>
    <mainTerm>
      <title>Diabetes, diabetic<nemod>(mellitus) (sugar)</nemod></title>
      <code>E11.9</code>
      <term level="1">
        <title>type 2</title>
        <code>E11.9</code>
        <term level="2">
          <title>with</title>
          <term level="3">
            <title>retinopathy</title>
            <code>E11.319</code>
            <term level="4">
              <title>with macular edema</title>
              <code>E11.311</code>
            </term>
          </term>
          <term level="3">
            <title>cataract</title>
            <code>E11.36</code>
          </term>
        </term>
      </term>
    </mainTerm>
    <mainTerm>
      <title>Dementia<nemod>(degenerative (primary)) (old age)</nemod> (persisting)</title>
      <code>F03.90</code>
      <term level="1">
        <title>in</title>
        <term level="2">
          <title>Parkinson's disease</title>
          <code>G20.C</code>
          <manif>[F02.80]</manif>
        </term>
      </term>
    </mainTerm>
    <mainTerm>
      <title>Disease, diseased</title>
      <seeAlso>Syndrome</seeAlso>
      <term level="1">
        <title>lightning</title>
        <subcat>T75.0</subcat>
      </term>
    </mainTerm>
  </letter>
</ICD10CM.index>
"""


@pytest.fixture(scope="module")
def official(tmp_path_factory) -> list[TermRow]:
    path = tmp_path_factory.mktemp("index") / "icd10cm-index-2025.xml.gz"
    path.write_bytes(gzip.compress(OFFICIAL_INDEX.encode()))
    return read_index_xml(path, "index", start_id=100)


@pytest.fixture(scope="module")
def csv_rows() -> list[TermRow]:
    return read_index_csv(SOURCE / "ICD10CM_2025_Index.DERIVED.csv.gz")


def by_path(rows: list[TermRow], path: str) -> TermRow:
    matches = [row for row in rows if row.path == path]
    assert len(matches) == 1, f"{path!r}: {len(matches)} rows"
    return matches[0]


def test_official_xml_rebuilds_the_tree_with_nemod_see_and_manif(official):
    assert [row.id for row in official] == list(range(100, 100 + len(official)))
    retinopathy = by_path(official, "Diabetes, diabetic, type 2, with, retinopathy")
    assert (retinopathy.level, retinopathy.code) == (3, "E11.319")
    with_term = by_path(official, "Diabetes, diabetic, type 2, with")
    assert retinopathy.parent_id == with_term.id and with_term.code is None
    diabetes = by_path(official, "Diabetes, diabetic")
    assert (diabetes.parent_id, diabetes.level, diabetes.nemod) == (None, 0, "(mellitus) (sugar)")
    assert by_path(official, "Abasia").nemod == "(-astasia) (hysterical)"
    assert by_path(official, "Abdominalgia").see == "Pain, abdominal"
    assert by_path(official, "Disease, diseased").see_also == "Syndrome"
    parkinson = by_path(official, "Dementia (persisting), in, Parkinson's disease")
    assert (parkinson.code, parkinson.manif) == ("G20.C", "F02.80")
    assert by_path(official, "Disease, diseased, lightning").code == "T75.0"


def test_nested_nemod_is_kept_whole_and_out_of_the_title(official):
    dementia = official[[row.title for row in official].index("Dementia (persisting)")]
    assert dementia.nemod == "(degenerative (primary)) (old age)"


def test_real_external_cause_index():
    rows = read_index_xml(SOURCE / "icd10cm-eindex-April-2025.xml.gz", "eindex")
    assert 7000 < len(rows) < 10000
    assert {row.source for row in rows} == {"eindex"}
    assert sum(row.parent_id is None for row in rows) == 314
    abandonment = rows[0]
    assert (abandonment.title, abandonment.code) == ("Abandonment NEC", "X58")
    assert abandonment.nemod.startswith("(causing exposure")
    aircraft = by_path(rows, "Accident, aircraft")
    assert aircraft.see_also == "Accident, transport, aircraft"
    assert by_path(rows, "Accident, boat, boating, striking swimmer, powered").code == "V94.11"
    assert sum(row.see is not None for row in rows) == 790


def test_real_csv_rebuilds_the_tree(csv_rows):
    assert len(csv_rows) == 81024
    assert len({row.id for row in csv_rows}) == 81024
    assert sum(row.level == 0 for row in csv_rows) == 8100
    abasia = by_path(csv_rows, "Abasia")
    assert (abasia.nemod, abasia.code) == ("(-astasia) (hysterical)", "F44.4")
    retinopathy = by_path(csv_rows, "Diabetes, diabetic, type 2, with, retinopathy")
    assert retinopathy.code in {"E11.319", "E11.31-"}
    parent = next(row for row in csv_rows if row.id == retinopathy.parent_id)
    assert parent.path == "Diabetes, diabetic, type 2, with"
    abdominalgia = by_path(csv_rows, "Abdominalgia")
    assert (abdominalgia.see, abdominalgia.code) == ("Pain, abdominal", None)
    assert by_path(csv_rows, "Abdomen, abdominal").see_also == "condition"
    for row in csv_rows:
        if row.parent_id is not None:
            assert row.parent_id < row.id and row.level > 0


def test_csv_with_a_level_gap_names_the_line(tmp_path):
    path = tmp_path / "index.csv"
    path.write_text(
        "RowID,Letter,Level,Term,See,SeeAlso,NonEssModif,Code\n"
        "1,A,0,Abasia,,,,F44.4\n"
        "2,A,2,deep,,,,F44.4\n"
    )
    with pytest.raises(SourceError, match="line 3"):
        read_index_csv(path)


def test_unreadable_sources_raise_source_error(tmp_path):
    with pytest.raises(SourceError, match="missing.xml"):
        read_index_xml(tmp_path / "missing.xml", "index")
    wrong = tmp_path / "wrong.xml"
    wrong.write_text("<ICD10CM.tabular/>")
    with pytest.raises(SourceError, match="expected <ICD10CM.index>"):
        read_index_xml(wrong, "index")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match="expected CSV columns"):
        read_index_csv(bad_csv)
