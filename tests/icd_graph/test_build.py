import gzip
import json
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from cli import cli
from icd_graph.build import build, release_name, search_dir_for
from icd_graph.errors import SourceError
from icd_graph.schema import SCHEMA_VERSION

TINY_TABULAR = """<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.tabular>
  <version>2026</version>
  <chapter>
    <name>4</name>
    <desc>Endocrine, nutritional and metabolic diseases (E00-E89)</desc>
    <section id="E08-E13">
      <desc>Diabetes mellitus (E08-E13)</desc>
      <diag>
        <name>E11</name>
        <desc>Type 2 diabetes mellitus</desc>
        <useAdditionalCode><note>code to identify control using insulin (Z79.4)</note></useAdditionalCode>
        <diag><name>E11.9</name><desc>Type 2 diabetes mellitus without complications</desc></diag>
        <diag><name>E11.8</name><desc>Type 2 diabetes mellitus with unspecified complications</desc></diag>
      </diag>
    </section>
  </chapter>
  <chapter>
    <name>9</name>
    <desc>Diseases of the circulatory system (I00-I99)</desc>
    <section id="I10-I1A">
      <desc>Hypertensive diseases (I10-I1A)</desc>
      <diag><name>I10</name><desc>Essential (primary) hypertension</desc></diag>
    </section>
  </chapter>
</ICD10CM.tabular>
"""


TINY_INDEX = """<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.index>
  <version>2025</version>
  <title>ICD-10-CM INDEX TO DISEASES and INJURIES</title>
  <letter>
    <title>D</title>
    <mainTerm>
      <title>Diabetes, diabetic<nemod>(mellitus)</nemod></title>
      <code>E11.9</code>
      <term level="1"><title>type 2</title><code>E11.-</code></term>
    </mainTerm>
  </letter>
  <letter>
    <title>H</title>
    <mainTerm><title>Hypertension, hypertensive</title><code>I10</code></mainTerm>
    <mainTerm><title>High blood pressure</title><see>Hypertension</see></mainTerm>
  </letter>
</ICD10CM.index>
"""


def tiny_source(folder: Path, index: bool = True) -> Path:
    folder.mkdir()
    (folder / "icd10cm-tabular-October-1-2025.xml").write_text(TINY_TABULAR)
    if index:
        (folder / "icd10cm-index-October-1-2025.xml.gz").write_bytes(gzip.compress(TINY_INDEX.encode()))
    return folder


def leftovers(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()}


def test_tabular_only_build(tmp_path):
    db = tmp_path / "out" / "kb.duckdb"
    report = build(source=tiny_source(tmp_path / "src", index=False), db=db)
    assert report.release == "ICD-10-CM October 1 2025" and report.fiscal_year == 2026
    assert report.counts["billable codes"] == 3 and report.counts["nodes chapter"] == 2
    assert leftovers(db.parent) == {"kb.duckdb", "kb.duckdb.bm25"}
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT schema_version FROM release").fetchone() == (SCHEMA_VERSION,)
        assert con.execute("SELECT kind FROM source_files").fetchall() == [("tabular",)]
        edges = con.execute("SELECT a, b FROM graph_edges WHERE kind = 'hierarchy' ORDER BY b").fetchall()
        assert ("E11", "E11.9") in edges and ("CH09", "I10-I1A") in edges
        assert con.execute("SELECT count(*) FROM index_terms").fetchone() == (0,)


def test_index_terms_are_resolved_against_the_tabular(tmp_path):
    db = tmp_path / "kb.duckdb"
    report = build(source=tiny_source(tmp_path / "src"), db=db)
    assert report.counts["index terms index"] == 4
    with duckdb.connect(str(db), read_only=True) as con:
        completed = con.execute("SELECT code FROM index_codes WHERE raw_code = 'E11.-' ORDER BY code").fetchall()
        assert completed == [("E11.8",), ("E11.9",)]
        assert con.execute("SELECT DISTINCT kind FROM source_files ORDER BY kind").fetchall() == [("index",), ("tabular",)]


def test_rebuild_is_idempotent(tmp_path):
    source, db = tiny_source(tmp_path / "src"), tmp_path / "kb.duckdb"
    first = build(source=source, db=db)
    with duckdb.connect(str(db), read_only=True) as con:
        nodes = con.execute("SELECT * FROM nodes ORDER BY seq").fetchall()
    second = build(source=source, db=db)
    assert second.counts == first.counts
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT * FROM nodes ORDER BY seq").fetchall() == nodes
    assert leftovers(tmp_path) == {"src", "kb.duckdb", "kb.duckdb.bm25"}


@pytest.mark.parametrize("broken", ["tabular", "eindex"])
def test_failed_build_leaves_the_previous_db_intact(tmp_path, icd_source, broken):
    db = tmp_path / "kb.duckdb"
    build(source=tiny_source(tmp_path / "good"), db=db)
    before = db.read_bytes()
    bad = tmp_path / "bad"
    bad.mkdir()
    tabular = TINY_TABULAR
    if broken == "tabular":
        tabular = TINY_TABULAR[: len(TINY_TABULAR) // 2]
    else:
        eindex = gzip.decompress((icd_source / "icd10cm-eindex-April-2025.xml.gz").read_bytes())
        (bad / "icd10cm-eindex-April-2025.xml").write_bytes(eindex[:5000])
    (bad / "icd10cm-tabular-October-1-2025.xml").write_text(tabular)
    with pytest.raises(SourceError, match=f"icd10cm-{broken}"):
        build(source=bad, db=db)
    assert db.read_bytes() == before
    assert leftovers(tmp_path) == {"good", "bad", "kb.duckdb", "kb.duckdb.bm25"}


def test_release_name_from_the_file_name():
    assert release_name("icd10c-tabular-April-1-2026.xml", 2026) == "ICD-10-CM April 1 2026"
    assert release_name("tabular.xml", 2025) == "ICD-10-CM FY2025"


def test_cli_build_json_and_error(tmp_path):
    runner = CliRunner()
    db = tmp_path / "kb.duckdb"
    result = runner.invoke(cli, ["icd", "build", "--source", str(tiny_source(tmp_path / "src")), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["release"] == "ICD-10-CM October 1 2025" and report["counts"]["billable codes"] == 3
    missing = tmp_path / "nowhere"
    result = runner.invoke(cli, ["icd", "build", "--source", str(missing), "--db", str(db)])
    assert result.exit_code == 1 and str(missing) in result.output


def test_full_build_release_sources_and_report(kb_path):
    with duckdb.connect(str(kb_path), read_only=True) as con:
        assert con.execute("SELECT name, fiscal_year FROM release").fetchone() == ("ICD-10-CM April 1 2026", 2026)
        kinds = {row[0] for row in con.execute("SELECT kind FROM source_files").fetchall()}
        assert kinds == {"tabular", "index_csv", "eindex", "neoplasm", "drug"}
        report = dict(con.execute("SELECT item, count FROM build_report").fetchall())
        edges = con.execute("SELECT count(*) FROM graph_edges WHERE kind = 'hierarchy'").fetchone()[0]
        nodes = con.execute("SELECT count(*) FROM nodes WHERE parent IS NOT NULL").fetchone()[0]
    assert report["billable codes"] == 74719 and report["nodes chapter"] == 22
    assert report["index terms index"] == 81024
    # the codes printed in the FY2025 index and tables: billable as printed in the April 2026
    # release, or resolved to their billable descendants; none unknown
    assert (report["index codes billable"], report["index codes completed"], report["index codes unknown"]) == (13714, 11185, 0)
    assert report["notes"] == 26952 and report["index terms eindex"] == 8064
    assert edges == nodes
    assert search_dir_for(kb_path).is_dir()
