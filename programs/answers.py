"""The answer of an LM stage as a JSON schema, derived from its DSPy signature, with the code
fields of one call narrowed to what that call may answer.

Every output field is required, in the signature's order: a `str` is a string of at most
FIELD_CHARS[name] characters (MAX_CHARS for a name not in the table), a `list[str]` at most
MAX_ITEMS of them. The lengths bound what a small model that repeats itself can write. A call narrows a field to the
candidates it shows (`OneOf`: codes, or list numbers) or to the billable codes of the release
(`Codes`: the code grammar of icd_graph.grammar). Extensions that only a grammar can honour are
kept under 'x-' keys (`portable` drops them for servers that take a JSON schema).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from icd_graph.grammar import CODE_PATTERN, CodeGrammar

MAX_ITEMS = 12
MAX_CHARS = 150
FIELD_CHARS = {"evidence": 300, "statements": 300, "rationale": 200, "lead_terms": 60, "next_term": 60}
GRAMMAR_KEY = "x-gbnf"


@dataclass(frozen=True)
class OneOf:
    """The field's value (each item, for a list) is one of `values`."""

    values: tuple[str, ...]

    @classmethod
    def of(cls, values: Iterable[object]) -> OneOf:
        return cls(tuple(dict.fromkeys(str(value) for value in values)))

    def allows(self, value: str) -> bool:
        return value.strip() in self.values


@dataclass(frozen=True)
class Codes:
    """The field's value (each item, for a list) is a billable code of the release."""

    grammar: CodeGrammar

    def allows(self, value: str) -> bool:
        return self.grammar.accepts(value.strip())


Narrowing = OneOf | Codes


class SchemaError(ValueError):
    """A narrowing that the signature's fields cannot take."""


def answer_schema(signature, narrowed: Mapping[str, Narrowing] | None = None) -> dict[str, Any]:
    """The JSON schema of `signature`'s answer, `narrowed` fields restricted."""
    narrowed = dict(narrowed or {})
    fields = signature.output_fields
    unknown = set(narrowed) - set(fields)
    if unknown:
        raise SchemaError(f"{signature.__name__} has no output field {', '.join(sorted(unknown))}")
    properties = {}
    for name, field in fields.items():
        if field.annotation not in (str, list[str]):
            raise SchemaError(f"{signature.__name__}.{name} is {field.annotation}; answers hold strings and lists of strings")
        value = _string(narrowed.get(name), FIELD_CHARS.get(name, MAX_CHARS))
        properties[name] = {"type": "array", "items": value, "maxItems": MAX_ITEMS} if field.annotation == list[str] else value
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def _string(narrowing: Narrowing | None, chars: int) -> dict[str, Any]:
    if isinstance(narrowing, OneOf):
        if not narrowing.values:
            raise SchemaError("a field narrowed to no values cannot be answered")
        return {"type": "string", "enum": list(narrowing.values)}
    if isinstance(narrowing, Codes):
        return {"type": "string", "pattern": CODE_PATTERN, GRAMMAR_KEY: narrowing.grammar.rules}
    return {"type": "string", "maxLength": chars}


def portable(schema: Any) -> Any:
    """The schema without its grammar extensions and string lengths, for a server's
    `response_format` (OpenAI's strict schemas refuse unknown keys)."""
    if isinstance(schema, list):
        return [portable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    return {key: portable(value) for key, value in schema.items() if not key.startswith("x-") and key != "maxLength"}


def longest_answer(schema: dict[str, Any]) -> int:
    """The most characters an answer under `schema` can take (in JSONAdapter's indented layout,
    escapes counted as six characters): a token is at least one character, so a model given
    this many tokens always finishes its answer."""

    def longest(part: dict[str, Any], indent: int) -> int:
        if part["type"] == "array":
            return 4 + part["maxItems"] * (indent + 4 + longest(part["items"], indent + 2))
        if "enum" in part:
            return max(len(json.dumps(value, ensure_ascii=False)) for value in part["enum"])
        if GRAMMAR_KEY in part:
            return 10
        return 2 + 6 * part["maxLength"]

    body = sum(len(name) + 8 + longest(value, 2) for name, value in schema["properties"].items())
    return body + 4


def outside(narrowed: Mapping[str, Narrowing] | None, prediction) -> int:
    """How many values of the `narrowed` fields in `prediction` are not among those allowed."""
    count = 0
    for name, narrowing in (narrowed or {}).items():
        value = getattr(prediction, name, None)
        values = value if isinstance(value, list) else [] if value is None else [value]
        count += sum(not narrowing.allows(str(item)) for item in values)
    return count
