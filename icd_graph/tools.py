"""The knowledge-base operations the coding programs use, described once as tools with
JSON-schema parameters, a dispatcher that calls them on a `KnowledgeBase`, and a recording
wrapper that logs a program's own knowledge-base calls as the same tool calls.

Tools: `search`, `index_lookup` (navigate the alphabetic index), `show` (a code with its
instructional notes, inherited ones included), `expand`, `validate` and `table_lookup` (the
Table of Neoplasms or of Drugs and Chemicals). Every result is plain JSON (dicts, lists,
strings, numbers), so `encode(call(kb, name, arguments))` is the text of a tool message and
calling the same tool again on the same knowledge base gives the same text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from typing import Any

from icd_graph.errors import IcdError
from icd_graph.kb import EXPANSIONS, INDEXES, TABLES

SOURCES = ("all", "index", "tabular")
MAX_LIMIT = 100
EXPAND_LIMIT = 50
SCORE_DIGITS = 4


class ToolArgumentError(IcdError):
    """A tool call naming no known tool, or with arguments its schema does not allow."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[Any, dict[str, Any]], Any]

    def spec(self) -> dict[str, Any]:
        """The OpenAI function-tool description."""
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": self.parameters}}


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _code_param(what: str) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "description": what}


def _limit(default: int, what: str) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default, "description": what}


# -- results as JSON ---------------------------------------------------------------------


def _hit(hit) -> dict[str, Any]:
    return {"code": hit.code, "description": hit.description, "matched": hit.matched, "source": hit.source,
            "score": round(float(hit.score), SCORE_DIGITS)}


def _entry(entry) -> dict[str, Any]:
    return {"path": entry.path, "code": entry.code, "see": entry.see, "see_also": entry.see_also,
            "billable_codes": list(entry.billable_codes), "source": entry.source}


def _brief(info) -> dict[str, Any]:
    return {"code": info.code, "description": info.description, "billable": bool(info.billable)}


def _shown(info, notes) -> dict[str, Any]:
    return {
        "code": info.code, "description": info.description, "kind": info.kind, "billable": bool(info.billable),
        "parent": info.parent, "chapter": info.chapter, "block": info.block,
        "notes": [{"kind": note.kind, "text": note.text, "from": note.source} for note in notes],
    }


def _expanded(infos, limit: int) -> dict[str, Any]:
    return {"total": len(infos), "codes": [_brief(info) for info in infos[:limit]]}


def _row(row) -> dict[str, Any]:
    return {"path": row.path, "cells": [{"column": column, "code": code, "billable_codes": list(codes)} for column, code, codes in row.cells]}


# -- the tools -----------------------------------------------------------------------------


def _search(kb, args):
    return [_hit(hit) for hit in kb.search(args["query"], k=args.get("k", 20), source=args.get("source", "all"))]


def _index_lookup(kb, args):
    return [_entry(entry) for entry in kb.index_lookup(list(args["terms"]), limit=args.get("limit", 25), index=args.get("index"))]


def _show(kb, args):
    info = kb.require(args["code"])
    return _shown(info, kb.notes(info.code, inherited=args.get("inherited", True)))


def _expand(kb, args):
    return _expanded(kb.expand(args["code"], args["kind"]), args.get("limit", EXPAND_LIMIT))


def _validated(check) -> dict[str, Any]:
    return asdict(check) | {"completions": list(check.completions)}


def _validate(kb, args):
    return _validated(kb.validate(args["code"]))


def _table_lookup(kb, args):
    return [_row(row) for row in kb.table(args["table"], args["term"], limit=args.get("limit", 10))]


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "search",
            "Lexical search of ICD-10-CM for a diagnosis as written: the alphabetic index and the tabular list, "
            "fused (billable codes only), or one of them. Returns the best codes first.",
            _object({
                "query": {"type": "string", "minLength": 1, "description": "The diagnosis or condition, in the note's words."},
                "k": _limit(20, "Number of hits."),
                "source": {"type": "string", "enum": list(SOURCES), "default": "all",
                           "description": "all (fused, billable codes), index (alphabetic index), tabular (any node)."},
            }, ["query"]),
            _search,
        ),
        Tool(
            "index_lookup",
            "Navigate the ICD-10-CM Alphabetic Index like a coder: the first term that is a main term, then the "
            "subterm whose path covers most of the words; 'see' references are followed. Returns the reached entry, "
            "the followed references, then the subterms, each with the printed code and its billable codes.",
            _object({
                "terms": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                          "description": "The main term first (e.g. 'Diabetes'), then modifiers or the whole statement."},
                "limit": _limit(25, "At most this many entries."),
                "index": {"type": "string", "enum": list(INDEXES),
                          "description": "Only main terms of the Alphabetic Index ('index') or of the External Cause "
                                         "Index ('eindex', for how an injury happened); both when omitted."},
            }, ["terms"]),
            _index_lookup,
        ),
        Tool(
            "show",
            "A code of the Tabular List (or a block 'E08-E13' or chapter 'CH04') with its instructional notes: "
            "includes, excludes1, excludes2, code first, use additional code, code also, 7th characters; with "
            "inherited=true also those of its category, block and chapter, nearest first ('from' names the carrier).",
            _object({
                "code": _code_param("An ICD-10-CM code in any spelling ('E11.9', 'e119')."),
                "inherited": {"type": "boolean", "default": True, "description": "Add the notes of the ancestors."},
            }, ["code"]),
            _show,
        ),
        Tool(
            "expand",
            "Codes related to a code in the hierarchy or the index graph: parent, children, ancestors (nearest "
            "first), descendants, siblings, cousins, neighbors1 / neighbors2 (1 / 2 hops), billable (the billable "
            "codes at or under it, most general first). Returns the total and the first `limit`.",
            _object({
                "code": _code_param("An ICD-10-CM code, block or chapter."),
                "kind": {"type": "string", "enum": list(EXPANSIONS)},
                "limit": _limit(EXPAND_LIMIT, "At most this many codes."),
            }, ["code", "kind"]),
            _expand,
        ),
        Tool(
            "validate",
            "Whether a code is a billable code of the release; if not, why (malformed, unknown, needs a 7th "
            "character, category with subcodes) and its billable completions.",
            _object({"code": _code_param("The code to check.")}, ["code"]),
            _validate,
        ),
        Tool(
            "table_lookup",
            "Rows of the Table of Neoplasms (columns by behaviour: malignant primary, secondary, in situ, benign, "
            "uncertain, unspecified) or of the Table of Drugs and Chemicals (poisoning, adverse effect, "
            "underdosing) whose path holds every word of the term.",
            _object({
                "table": {"type": "string", "enum": list(TABLES)},
                "term": {"type": "string", "minLength": 1, "description": "A site ('pituitary') or a substance ('acetaminophen')."},
                "limit": _limit(10, "At most this many rows."),
            }, ["table", "term"]),
            _table_lookup,
        ),
    )
}


def specs() -> list[dict[str, Any]]:
    """Every tool as an OpenAI function-tool description (the `tools` list of a chat request)."""
    return [tool.spec() for tool in TOOLS.values()]


def check_arguments(name: str, arguments: Any) -> list[str]:
    """What is wrong with a call's arguments against the tool's schema (empty when nothing)."""
    import jsonschema

    tool = TOOLS.get(name)
    if tool is None:
        return [f"unknown tool {name!r}; tools: {', '.join(TOOLS)}"]
    validator = jsonschema.Draft202012Validator(tool.parameters)
    return [f"{name}: {'/'.join(map(str, e.path)) or 'arguments'}: {e.message}" for e in validator.iter_errors(arguments)]


def call(kb, name: str, arguments: dict[str, Any]) -> Any:
    """The tool's JSON result on `kb`. A code the knowledge base does not know gives
    {"error": message}, as an agent should see it; arguments the schema refuses raise
    ToolArgumentError."""
    problems = check_arguments(name, arguments)
    if problems:
        raise ToolArgumentError("; ".join(problems))
    try:
        return TOOLS[name].run(kb, arguments)
    except IcdError as exc:
        return {"error": str(exc)}


def encode(result: Any) -> str:
    """The text of a tool message: compact JSON, non-ASCII kept."""
    return json.dumps(result, ensure_ascii=False, separators=(",", ":"))


# -- recording a program's calls ---------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    result: Any


class Recording:
    """One thread's log: `events` in call order (the caller may add its own events, such as LM
    calls, to the same list), each tool call once."""

    def __init__(self, events: list | None = None):
        self.events = [] if events is None else events
        self._seen: set[str] = set()

    def add(self, call_: ToolCall) -> None:
        key = encode([call_.name, call_.arguments])
        if key not in self._seen:
            self._seen.add(key)
            self.events.append(call_)


_RECORDING: ContextVar[Recording | None] = ContextVar("icd_tool_recording", default=None)


class RecordingKnowledgeBase:
    """A `KnowledgeBase` stand-in for a program: its search, index_lookup, notes, expand,
    complete, validate and table calls go to the real base and, inside `recording()`, are
    logged as the tool calls that return the same (a call repeated with the same arguments is
    logged once). Everything else (get, require, release, ...) passes through unlogged. Safe to
    share across threads: each thread's `recording()` has its own log."""

    def __init__(self, kb):
        self.kb = kb

    def __getattr__(self, name: str):
        return getattr(self.kb, name)

    @contextmanager
    def recording(self, events: list | None = None) -> Iterator[Recording]:
        """Log this thread's calls into `events` (a new list when None)."""
        log = Recording(events)
        token = _RECORDING.set(log)
        try:
            yield log
        finally:
            _RECORDING.reset(token)

    def _call(self, name: str, arguments: dict[str, Any], compute: Callable[[], Any], present: Callable[[Any], Any]):
        log = _RECORDING.get()
        if log is None:
            return compute()
        try:
            value = compute()
        except IcdError as exc:
            log.add(ToolCall(name, arguments, {"error": str(exc)}))
            raise
        log.add(ToolCall(name, arguments, present(value)))
        return value

    def search(self, text: str, k: int = 20, source: str = "all"):
        return self._call("search", {"query": text, "k": k, "source": source},
                          lambda: self.kb.search(text, k=k, source=source), lambda hits: [_hit(h) for h in hits])

    def index_lookup(self, terms: list[str], limit: int = 25, index: str | None = None):
        arguments = {"terms": list(terms), "limit": limit} | ({"index": index} if index else {})
        return self._call("index_lookup", arguments, lambda: self.kb.index_lookup(terms, limit=limit, index=index),
                          lambda entries: [_entry(e) for e in entries])

    def notes(self, code: str, inherited: bool = True):
        return self._call("show", {"code": code, "inherited": inherited},
                          lambda: self.kb.notes(code, inherited=inherited), lambda notes: _shown(self.kb.require(code), notes))

    def expand(self, code: str, kind: str):
        return self._call("expand", {"code": code, "kind": kind},
                          lambda: self.kb.expand(code, kind), lambda infos: _expanded(infos, EXPAND_LIMIT))

    def complete(self, code: str) -> list[str]:
        return [info.code for info in self.expand(code, "billable")]

    def validate(self, code: str):
        return self._call("validate", {"code": code}, lambda: self.kb.validate(code), _validated)

    def table(self, name: str, term: str, limit: int = 10):
        return self._call("table_lookup", {"table": name, "term": term, "limit": limit},
                          lambda: self.kb.table(name, term, limit=limit), lambda rows: [_row(r) for r in rows])
