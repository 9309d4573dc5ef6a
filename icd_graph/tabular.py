"""Read the CMS Tabular List XML (`ICD10CM.tabular`) into node and note rows.

Hierarchy: chapter ('CH01') > block ('A00-A09') > category ('A00') > subcategories > codes.
A block whose range is a single category ('B10') is stored as 'B10-B10', so that it never
collides with the category of the same name.

7th characters are not diag elements in the XML: every leaf diag under a `sevenChrDef` (its
own or its nearest ancestor's) is expanded into one code per 7th character, padded with the
placeholder X to six characters ('W19' -> 'W19.XXXA'). The expanded code's parent is the leaf
diag it extends ('W19.XXXA' -> 'W19', 'T51.3X1A' -> 'T51.3X1'), so the placeholders add no
node and `ancestors` stays a plain chain. The leaf itself is then a subcategory, not billable.
Exclusions written as a note next to the definition ("7th characters D and S do not apply to
codes in category S06 with 6th character 7 - ..., or 8 - ...") are honoured.

Kinds: chapter | block | category (every three-character code, billable or not) |
subcategory (a non-billable code below a category) | code (billable, below a category).
"""

from __future__ import annotations

import gzip
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from icd_graph.codes import undotted, with_seventh
from icd_graph.errors import SourceError

ROOT_TAG = "ICD10CM.tabular"

NOTE_KINDS = {
    "inclusionTerm": "inclusion_term",
    "includes": "includes",
    "excludes1": "excludes1",
    "excludes2": "excludes2",
    "codeFirst": "code_first",
    "useAdditionalCode": "use_additional_code",
    "codeAlso": "code_also",
    "notes": "note",
    "sevenChrNote": "seventh_character_note",
}
SEVENTH = "seventh_character"

_EXCLUSION = re.compile(
    r"7th characters? (?P<chars>[A-Z](?:(?:,|,? and|,? or) [A-Z])*) do(?:es)? not apply to codes"
    r" in category [A-Z0-9]{3} with 6th character (?P<rest>.*)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class NodeRow:
    code: str
    kind: str
    description: str
    parent: str | None
    depth: int
    billable: bool
    chapter: str | None
    block: str | None
    seq: int


@dataclass(frozen=True)
class NoteRow:
    code: str
    kind: str
    text: str
    seq: int


@dataclass
class Tabular:
    version: str
    nodes: list[NodeRow] = field(default_factory=list)
    notes: list[NoteRow] = field(default_factory=list)


@dataclass(frozen=True)
class _Seventh:
    """The 7th characters in force at a node, and the (6th character -> excluded 7th) rule."""

    chars: tuple[tuple[str, str], ...]
    excluded: frozenset[tuple[str, str]] = frozenset()


def read_tabular(path: Path) -> Tabular:
    """Parse a tabular XML file (plain or .gz); SourceError naming the file if it is not one."""
    try:
        with _open(path) as stream:
            root = ET.parse(stream).getroot()
    except (OSError, EOFError, ET.ParseError) as exc:
        raise SourceError(f"{path}: cannot read the tabular XML ({exc})") from exc
    if root.tag != ROOT_TAG:
        raise SourceError(f"{path}: not a tabular XML (root <{root.tag}>, expected <{ROOT_TAG}>)")
    version = (root.findtext("version") or "").strip()
    if not version:
        raise SourceError(f"{path}: tabular XML without a <version>")
    reader = _Reader(Tabular(version=version))
    chapters = root.findall("chapter")
    if not chapters:
        raise SourceError(f"{path}: tabular XML without any <chapter>")
    for chapter in chapters:
        reader.chapter(chapter)
    return reader.tabular


def _open(path: Path):
    return gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")


def _text(element: ET.Element | None) -> str:
    return " ".join("".join(element.itertext()).split()) if element is not None else ""


class _Reader:
    def __init__(self, tabular: Tabular):
        self.tabular = tabular
        self.seq = 0

    def node(self, row: dict) -> NodeRow:
        self.seq += 1
        node = NodeRow(seq=self.seq, **row)
        self.tabular.nodes.append(node)
        return node

    def notes(self, code: str, element: ET.Element) -> None:
        for child in element:
            kind = NOTE_KINDS.get(child.tag)
            if kind is not None:
                for note in child.findall("note"):
                    self.note(code, kind, _text(note))
            elif child.tag == "sevenChrDef":
                for extension in child.findall("extension"):
                    self.note(code, SEVENTH, f"{extension.get('char')}: {_text(extension)}")

    def note(self, code: str, kind: str, text: str) -> None:
        self.seq += 1
        self.tabular.notes.append(NoteRow(code=code, kind=kind, text=text, seq=self.seq))

    def chapter(self, element: ET.Element) -> None:
        code = f"CH{int(element.findtext('name', '0')):02d}"
        self.node(dict(code=code, kind="chapter", description=_text(element.find("desc")),
                       parent=None, depth=0, billable=False, chapter=code, block=None))
        self.notes(code, element)
        for section in element.findall("section"):
            self.block(section, code)

    def block(self, element: ET.Element, chapter: str) -> None:
        block_id = element.get("id", "")
        code = block_id if "-" in block_id else f"{block_id}-{block_id}"
        self.node(dict(code=code, kind="block", description=_text(element.find("desc")),
                       parent=chapter, depth=1, billable=False, chapter=chapter, block=code))
        self.notes(code, element)
        for diag in element.findall("diag"):
            self.diag(diag, parent=code, depth=2, chapter=chapter, block=code, seventh=None)

    def diag(self, element: ET.Element, parent: str, depth: int, chapter: str, block: str,
             seventh: _Seventh | None) -> None:
        code = _text(element.find("name"))
        seventh = _seventh_rule(element) or seventh
        children = element.findall("diag")
        billable = not children and seventh is None
        kind = "category" if depth == 2 else "code" if billable else "subcategory"
        row = dict(code=code, kind=kind, description=_text(element.find("desc")), parent=parent,
                   depth=depth, billable=billable, chapter=chapter, block=block)
        self.node(row)
        self.notes(code, element)
        for child in children:
            self.diag(child, parent=code, depth=depth + 1, chapter=chapter, block=block,
                      seventh=seventh)
        if not children and seventh is not None:
            sixth = undotted(code)[5:6]
            for char, meaning in seventh.chars:
                if (sixth, char) not in seventh.excluded:
                    self.node(dict(row, code=with_seventh(code, char), kind="code",
                                   description=f"{row['description']}, {meaning}", parent=code,
                                   depth=depth + 1, billable=True))


def _seventh_rule(element: ET.Element) -> _Seventh | None:
    definition = element.find("sevenChrDef")
    if definition is None:
        return None
    chars = tuple((ext.get("char", ""), _text(ext)) for ext in definition.findall("extension"))
    excluded = set()
    for note in element.findall("notes/note"):
        match = _EXCLUSION.search(_text(note))
        if match:
            sevenths = re.findall(r"\b([A-Z])\b", match["chars"])
            sixths = re.findall(r"\b(\d) -", match["rest"]) or re.findall(r"\b(\d)\b", match["rest"])
            excluded.update((six, seven) for six in sixths for seven in sevenths)
    return _Seventh(chars=chars, excluded=frozenset(excluded))
