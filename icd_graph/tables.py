"""Read the Table of Neoplasms and the Table of Drugs and Chemicals into term rows and cells."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from icd_graph.alphabetic import TermRow, element_text, parse_index_root, walk_index_xml
from icd_graph.errors import SourceError

EMPTY_CELL_CHARS = frozenset("-")


class CellRow(NamedTuple):
    """One row of the `table_cells` table."""

    term_id: int
    table_name: str
    column_no: int
    column_name: str
    code: str


def read_table_xml(path: Path, table_name: str, start_id: int = 1) -> tuple[list[TermRow], list[CellRow]]:
    """Terms (source = `table_name`, code NULL) and their coded cells; '--' and '-' cells are left out.

    Term ids are numbered from `start_id` in document order.
    """
    root = parse_index_root(path)
    columns = {int(head.get("col", "0")): element_text(head) for head in root.iterfind("indexHeading/head")}
    if not columns:
        raise SourceError(f"{path} has no <indexHeading> column names: is it the neoplasm or drug table?")
    terms: list[TermRow] = []
    cells: list[CellRow] = []
    for row, element in walk_index_xml(root, table_name, start_id):
        terms.append(row)
        for cell in element.iterfind("cell"):
            code = element_text(cell)
            if not code or set(code) <= EMPTY_CELL_CHARS:
                continue
            column_no = int(cell.get("col", "0"))
            if column_no not in columns:
                raise SourceError(f"{path}: term {row.path!r} has a cell in column {column_no}, which has no heading")
            cells.append(CellRow(row.id, table_name, column_no, columns[column_no], code))
    return terms, cells
