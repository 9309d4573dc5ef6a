"""Typed records returned by the knowledge base."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CodeInfo:
    code: str
    description: str
    kind: str
    billable: bool
    parent: str | None
    depth: int
    chapter: str | None
    block: str | None


@dataclass(frozen=True)
class Note:
    """An instructional note; `source` is the node that carries it (the code itself or an ancestor)."""

    kind: str
    text: str
    source: str


@dataclass(frozen=True)
class SearchHit:
    code: str
    description: str
    score: float
    matched: str
    source: str


@dataclass(frozen=True)
class IndexEntry:
    """One alphabetic-index term reached by navigation, with its codes resolved to billable ones."""

    path: str
    code: str | None
    see: str | None
    see_also: str | None
    billable_codes: tuple[str, ...] = ()
    source: str = "index"


@dataclass(frozen=True)
class TableRow:
    """One row of the Table of Neoplasms or the Table of Drugs and Chemicals: its path and its
    cells as (column name, code as printed, billable codes it resolves to)."""

    table: str
    path: str
    cells: tuple[tuple[str, str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Validation:
    """`completions`: billable codes at or under the code, most general first, capped;
    `completion_count`: how many there are in all."""

    input: str
    code: str | None
    valid: bool
    billable: bool
    reason: str
    completions: tuple[str, ...] = field(default_factory=tuple)
    completion_count: int = 0


@dataclass(frozen=True)
class Release:
    """The release a knowledge-base file was built from; `sources` are the source file names."""

    name: str
    fiscal_year: int
    built_at: str
    sources: tuple[str, ...]
