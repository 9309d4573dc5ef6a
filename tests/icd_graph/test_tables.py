import os
from pathlib import Path

import pytest

from icd_graph.errors import SourceError
from icd_graph.tables import read_table_xml

SOURCE = Path(os.environ["ICD10CM_SOURCE"])


def cells_of(terms, cells, path):
    (term,) = [t for t in terms if t.path == path]
    return {c.column_name: c.code for c in cells if c.term_id == term.id}


def test_neoplasm_table():
    terms, cells = read_table_xml(SOURCE / "icd10cm-neoplasm-April-2025.xml.gz", "neoplasm", start_id=500)
    assert terms[0].id == 500 and terms[0].path == "Neoplasm, neoplastic"
    assert 1500 < len(terms) < 2500 and 8000 < len(cells) < 11000
    abdomen = cells_of(terms, cells, "Neoplasm, neoplastic, abdomen, abdominal")
    assert abdomen["Malignant Primary"] == "C76.2"
    assert abdomen["Malignant Secondary"] == "C79.8-"
    assert {c.column_no for c in cells} == {2, 3, 4, 5, 6, 7}
    assert {t.source for t in terms} == {"neoplasm"} and all(t.code is None for t in terms)


def test_drug_table_leaves_out_dash_cells():
    terms, cells = read_table_xml(SOURCE / "icd10cm-drug-April-2025.xml.gz", "drug")
    assert 6000 < len(terms) < 9000 and 35000 < len(cells) < 45000
    propanol = cells_of(terms, cells, "1-propanol")
    assert propanol == {
        "Poisoning Accidental (unintentional)": "T51.3X1",
        "Poisoning Intentional self-harm": "T51.3X2",
        "Poisoning Assault": "T51.3X3",
        "Poisoning Undetermined": "T51.3X4",
    }
    assert not any(set(c.code) <= {"-"} for c in cells)


def test_file_without_headings_is_rejected(tmp_path):
    path = tmp_path / "eindex.xml"
    path.write_text("<ICD10CM.index><letter><title>A</title></letter></ICD10CM.index>")
    with pytest.raises(SourceError, match="indexHeading"):
        read_table_xml(path, "drug")
