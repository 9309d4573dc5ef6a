"""Read the Alphabetic Index (official CMS XML or its CSV flattening) into term rows.

Every reader numbers its rows consecutively from `start_id` in document order, so the
caller keeps ids unique across sources by passing the next free id (`rows[-1].id + 1`).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NamedTuple

from icd_graph.errors import SourceError

PATH_SEPARATOR = ", "
# A printed code, possibly incomplete or in brackets: 'E11.31-', 'D24.-', '[F02.80]'.
_CODE_LIKE = re.compile(r"\[?[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{0,4})?\.?-?\]?", re.IGNORECASE)
CSV_COLUMNS = ("RowID", "Letter", "Level", "Term", "See", "SeeAlso", "NonEssModif", "Code")


class TermRow(NamedTuple):
    """One row of the `index_terms` table."""

    id: int
    source: str
    parent_id: int | None
    level: int
    title: str
    nemod: str | None
    path: str
    code: str | None
    manif: str | None
    see: str | None
    see_also: str | None


def open_source(path: Path) -> IO[bytes]:
    """Open a source file for binary reading, gunzipping it when the name ends in `.gz`."""
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc


def parse_index_root(path: Path) -> ET.Element:
    """The `ICD10CM.index` root element of an index or table XML file."""
    try:
        with open_source(path) as stream:
            root = ET.parse(stream).getroot()
    except (ET.ParseError, OSError, EOFError) as exc:
        raise SourceError(f"{path} is not a readable index XML file: {exc}") from exc
    if root.tag != "ICD10CM.index":
        raise SourceError(f"{path} is not an ICD-10-CM index file (root <{root.tag}>, expected <ICD10CM.index>)")
    return root


def read_index_xml(path: Path, source: str = "index", start_id: int = 1) -> list[TermRow]:
    """Terms of the official Alphabetic Index or External Cause Index XML (`source='eindex'`).

    `code` holds the printed code, or the category of a 'see category' (`seecat`) or
    'see subcategory' (`subcat`) reference when no code is printed. A `manif` that is text,
    not a code (one in the neoplasm table), is appended to the title after ' - '.
    """
    return [row for row, _ in walk_index_xml(parse_index_root(path), source, start_id)]


def walk_index_xml(root: ET.Element, source: str, start_id: int = 1) -> Iterator[tuple[TermRow, ET.Element]]:
    """Each mainTerm and term of an index document in document order, with its element."""
    next_id = start_id
    stack: list[tuple[ET.Element, int | None, int, str]] = []
    for letter in root.iterfind("letter"):
        stack.extend((main, None, 0, "") for main in reversed(letter.findall("mainTerm")))
        while stack:
            element, parent_id, level, parent_path = stack.pop()
            title, nemod = _title(element)
            manif = _child_text(element, "manif")
            if manif and not _CODE_LIKE.fullmatch(manif):
                title, manif = f"{title} - {manif}", None
            path = f"{parent_path}{PATH_SEPARATOR}{title}" if parent_path else title
            row = TermRow(
                id=next_id,
                source=source,
                parent_id=parent_id,
                level=level,
                title=title,
                nemod=nemod,
                path=path,
                code=_child_text(element, "code") or _child_text(element, "subcat") or _child_text(element, "seecat"),
                manif=_strip_brackets(manif),
                see=_child_text(element, "see"),
                see_also=_child_text(element, "seeAlso"),
            )
            next_id += 1
            yield row, element
            stack.extend((child, row.id, level + 1, path) for child in reversed(element.findall("term")))


def read_index_csv(path: Path, start_id: int = 1) -> list[TermRow]:
    """Terms of the Alphabetic Index CSV (RowID, Letter, Level, Term, See, SeeAlso, NonEssModif, Code)."""
    with open_source(path) as stream:
        text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
        try:
            reader = csv.reader(text)
            header = next(reader, None)
            if header is None or tuple(header) != CSV_COLUMNS:
                raise SourceError(f"{path}: expected CSV columns {','.join(CSV_COLUMNS)}, found {header}")
            return _csv_rows(reader, path, start_id)
        except (csv.Error, UnicodeDecodeError, OSError, EOFError) as exc:
            raise SourceError(f"{path} is not a readable index CSV file: {exc}") from exc


def _csv_rows(reader: Iterator[list[str]], path: Path, start_id: int) -> list[TermRow]:
    rows: list[TermRow] = []
    ancestors: list[TermRow] = []
    for line_no, (_, _, level_text, term, see, see_also, nemod, code) in enumerate(reader, start=2):
        level = int(level_text) if level_text.isdigit() else -1
        if level < 0 or level > len(ancestors):
            raise SourceError(f"{path} line {line_no}: level {level_text!r} does not follow the previous row")
        del ancestors[level:]
        parent = ancestors[-1] if ancestors else None
        title = " ".join(term.split())
        row = TermRow(
            id=start_id + len(rows),
            source="index",
            parent_id=parent.id if parent else None,
            level=level,
            title=title,
            nemod=nemod.strip() or None,
            path=f"{parent.path}{PATH_SEPARATOR}{title}" if parent else title,
            code=code.strip() or None,
            manif=None,
            see=see.strip() or None,
            see_also=see_also.strip() or None,
        )
        rows.append(row)
        ancestors.append(row)
    return rows


def element_text(element: ET.Element, skip: frozenset[str] = frozenset({"nemod", "old"})) -> str:
    """The whitespace-normalised text of an element, leaving out children tagged in `skip`."""
    parts = [element.text or ""]
    for child in element:
        if child.tag not in skip:
            parts.append(element_text(child, skip))
        parts.append(child.tail or "")
    return " ".join("".join(parts).split())


def _title(element: ET.Element) -> tuple[str, str | None]:
    heading = element.find("title")
    if heading is None:
        heading = element.find("diff")
    if heading is None:
        return "", None
    nemod = " ".join(element_text(n) for n in heading.iter("nemod"))
    return element_text(heading), nemod or None


def _child_text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    return (element_text(child) or None) if child is not None else None


def _strip_brackets(code: str | None) -> str | None:
    return (code.strip("[] ") or None) if code else None
