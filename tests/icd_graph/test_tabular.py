"""The tabular parser on a small hand-written XML (7th-character rules) and, through the session
knowledge base, on the real April 2026 release."""

import gzip
from pathlib import Path

import duckdb
import pytest

from icd_graph.errors import SourceError
from icd_graph.tabular import read_tabular

SMALL_TABULAR = """<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.tabular>
  <version>2026</version>
  <chapter>
    <name>19</name>
    <desc>Injury, poisoning and certain other consequences of external causes (S00-T88)</desc>
    <section id="S00-S09">
      <desc>Injuries to the head (S00-S09)</desc>
      <diag>
        <name>S06</name>
        <desc>Intracranial injury</desc>
        <sevenChrNote><note>The appropriate 7th character is to be added to each code from category S06</note></sevenChrNote>
        <sevenChrDef>
          <extension char="A">initial encounter</extension>
          <extension char="D">subsequent encounter</extension>
          <extension char="S">sequela</extension>
        </sevenChrDef>
        <notes>
          <note>7th characters D and S do not apply to codes in category S06 with 6th character 7 - death due to brain injury prior to regaining consciousness, or 8 - death due to other cause prior to regaining consciousness.</note>
        </notes>
        <diag>
          <name>S06.0</name>
          <desc>Concussion</desc>
          <diag>
            <name>S06.0X</name>
            <desc>Concussion, other</desc>
            <diag><name>S06.0X1</name><desc>Concussion with loss of consciousness of 30 minutes or less</desc></diag>
            <diag><name>S06.0X7</name><desc>Concussion with loss of consciousness with death due to brain injury</desc></diag>
          </diag>
        </diag>
      </diag>
    </section>
  </chapter>
  <chapter>
    <name>20</name>
    <desc>External causes of morbidity (V00-Y99)</desc>
    <section id="W19">
      <desc>Unspecified fall (W19)</desc>
      <diag>
        <name>W19</name>
        <desc>Unspecified fall</desc>
        <inclusionTerm><note>Accidental fall NOS</note></inclusionTerm>
        <sevenChrDef>
          <extension char="A">initial encounter</extension>
          <extension char="D">subsequent encounter</extension>
        </sevenChrDef>
      </diag>
    </section>
    <section id="Y90-Y99">
      <desc>Supplementary factors (Y90-Y99)</desc>
      <diag>
        <name>Y93</name>
        <desc>Activity codes</desc>
        <diag><name>Y93.0</name><desc>Activities involving walking</desc>
          <useAdditionalCode><note>code for the place</note></useAdditionalCode>
          <diag><name>Y93.01</name><desc>Activity, walking</desc></diag>
        </diag>
      </diag>
    </section>
  </chapter>
</ICD10CM.tabular>
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("tabular") / "small.xml.gz"
    path.write_bytes(gzip.compress(SMALL_TABULAR.encode()))
    tabular = read_tabular(path)
    return tabular, {node.code: node for node in tabular.nodes}


def test_hierarchy_kinds_and_depths(small):
    tabular, nodes = small
    assert tabular.version == "2026"
    assert nodes["CH19"].kind == "chapter" and nodes["CH19"].parent is None
    assert nodes["S00-S09"].parent == "CH19" and nodes["S00-S09"].depth == 1
    assert nodes["S06"].kind == "category" and nodes["S06"].parent == "S00-S09"
    assert nodes["S06.0X1"].kind == "subcategory" and not nodes["S06.0X1"].billable
    assert nodes["Y93.01"].kind == "code" and nodes["Y93.01"].billable
    assert nodes["Y93.01"].chapter == "CH20" and nodes["Y93.01"].block == "Y90-Y99"


def test_single_category_block_does_not_collide_with_its_category(small):
    _, nodes = small
    assert nodes["W19-W19"].kind == "block"
    assert nodes["W19"].kind == "category" and nodes["W19"].parent == "W19-W19"


def test_seventh_characters_pad_with_x_and_extend_the_leaf(small):
    _, nodes = small
    fall = nodes["W19.XXXA"]
    assert fall.billable and fall.kind == "code" and fall.parent == "W19"
    assert fall.description == "Unspecified fall, initial encounter"
    assert not nodes["W19"].billable
    assert {"S06.0X1A", "S06.0X1D", "S06.0X1S"} <= nodes.keys()


def test_s06_exception_drops_d_and_s_after_sixth_character_7(small):
    _, nodes = small
    assert "S06.0X7A" in nodes
    assert "S06.0X7D" not in nodes and "S06.0X7S" not in nodes


def test_notes_by_kind_with_seventh_character_definitions(small):
    tabular, _ = small
    notes = {(note.code, note.kind, note.text) for note in tabular.notes}
    assert ("W19", "inclusion_term", "Accidental fall NOS") in notes
    assert ("W19", "seventh_character", "A: initial encounter") in notes
    assert ("Y93.0", "use_additional_code", "code for the place") in notes
    assert any(code == "S06" and kind == "note" for code, kind, _ in notes)


@pytest.mark.parametrize(
    "content, message",
    [
        (SMALL_TABULAR[: len(SMALL_TABULAR) // 2], "cannot read the tabular XML"),
        ("<ICD10CM.index><version>2025</version></ICD10CM.index>", "not a tabular XML"),
    ],
)
def test_bad_file_raises_source_error_naming_it(tmp_path, content, message):
    path = tmp_path / "broken-tabular.xml"
    path.write_text(content)
    with pytest.raises(SourceError, match=message) as error:
        read_tabular(path)
    assert "broken-tabular.xml" in str(error.value)


@pytest.fixture(scope="module")
def con(kb_path: Path):
    connection = duckdb.connect(str(kb_path), read_only=True)
    yield connection
    connection.close()


def test_april_2026_has_74719_billable_codes_and_22_chapters(con):
    assert con.execute("SELECT count(*) FROM nodes WHERE billable").fetchone()[0] == 74719
    assert con.execute("SELECT count(*) FROM nodes WHERE kind = 'chapter'").fetchone()[0] == 22


@pytest.mark.parametrize(
    "code, parent, billable",
    [
        ("E11.9", "E11", True),
        ("E11", "E08-E13", False),
        ("S72.001A", "S72.001", True),
        ("W19.XXXA", "W19", True),
        ("T51.3X1A", "T51.3X1", True),
        ("S06.377A", "S06.377", True),
        ("I10", "I10-I1A", True),
    ],
)
def test_known_codes(con, code, parent, billable):
    assert con.execute("SELECT parent, billable FROM nodes WHERE code = ?", [code]).fetchone() == (parent, billable)


@pytest.mark.parametrize("code", ["W19", "S72.001", "E11", "E11.31", "S06.377"])
def test_parent_codes_are_present_and_not_billable(con, code):
    assert con.execute("SELECT billable FROM nodes WHERE code = ?", [code]).fetchone() == (False,)


@pytest.mark.parametrize("code", ["S06.377D", "S06.378S", "S06.0X7A", "W19.XXXZ", "E11.99"])
def test_codes_the_tabular_list_does_not_allow_are_absent(con, code):
    # S06 codes with a 6th character 7 or 8 (death) take only the initial encounter, and a
    # concussion (S06.0X) has no 6th character 7; W19 lists A, D and S; E11.9 has no subcodes
    assert con.execute("SELECT billable FROM nodes WHERE code = ?", [code]).fetchone() is None


def test_s06_sixth_character_7_keeps_only_initial_encounter(con):
    codes = {row[0] for row in con.execute("SELECT code FROM nodes WHERE parent = 'S06.377'").fetchall()}
    assert codes == {"S06.377A"}


@pytest.mark.parametrize(
    "code, kind",
    [("E11", "use_additional_code"), ("I10", "excludes1"), ("I10", "excludes2"), ("S72", "seventh_character")],
)
def test_notes_present(con, code, kind):
    assert con.execute("SELECT count(*) FROM notes WHERE code = ? AND kind = ?", [code, kind]).fetchone()[0] > 0


def test_ancestors_follow_the_parent_chain(con):
    chain = con.execute("SELECT ancestor FROM ancestors WHERE code = 'S72.001A' ORDER BY distance").fetchall()
    assert [row[0] for row in chain] == ["S72.001", "S72.00", "S72.0", "S72", "S70-S79", "CH19"]
