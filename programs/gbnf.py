"""An answer schema (programs.answers) as a GBNF grammar for llama.cpp (in process, or its
server's `grammar` field) and vLLM: the JSON object laid out as DSPy's JSONAdapter writes the
demos (`json.dumps(..., indent=2)`), so the grammar and the demos agree token for token, and the
answer ends at its closing brace.

Strings take at most `maxLength` characters (an escape counts as one), lists at most `maxItems`
items, an enum only its values, and a field carrying a code grammar ('x-gbnf') only its codes.
"""

from __future__ import annotations

import json
from typing import Any

from icd_graph.grammar import ROOT as CODE_ROOT
from programs.answers import GRAMMAR_KEY

TEXT = "json-char"
CHARACTER = f'{TEXT} ::= [^"\\\\\\x00-\\x1f] | "\\\\" (["\\\\/bfnrt] | "u" [0-9a-fA-F]{{4}})'


def to_gbnf(schema: dict[str, Any]) -> str:
    """The grammar of answers to `schema` (an object of strings and lists of strings)."""
    rules: dict[str, str] = {}
    extra: list[str] = []
    parts = []
    for i, (name, field) in enumerate(schema["properties"].items()):
        rule = f"f{i}"
        rules[rule] = _value(field, 1, rule, rules, extra)
        parts.append(f"{literal(('{' if i == 0 else ',') + chr(10) + '  ' + json.dumps(name) + ': ')} {rule}")
    parts.append(literal("\n}") if parts else literal("{}"))
    lines = [f"root ::= {' '.join(parts)}", *(f"{name} ::= {body}" for name, body in rules.items())]
    if any(TEXT in body for body in rules.values()):
        lines.append(CHARACTER)
    return "\n".join(lines + extra) + "\n"


def _value(field: dict[str, Any], depth: int, name: str, rules: dict[str, str], extra: list[str]) -> str:
    if field.get("type") == "array":
        item = f"{name}-item"
        rules[item] = _value(field["items"], depth + 1, item, rules, extra)
        inner, outer = "\n" + "  " * (depth + 1), "\n" + "  " * depth
        more = field.get("maxItems", 1) - 1
        tail = f" ({literal(',' + inner)} {item}){{0,{more}}}" if more > 0 else ""
        return f'"[]" | {literal("[" + inner)} {item}{tail} {literal(outer + "]")}'
    if field.get("type") != "string":
        raise ValueError(f"answer grammars hold strings and lists of strings, not {field.get('type')}")
    if "enum" in field:
        return " | ".join(literal(json.dumps(value, ensure_ascii=False)) for value in field["enum"])
    if GRAMMAR_KEY in field:
        if field[GRAMMAR_KEY] not in extra:
            extra.append(field[GRAMMAR_KEY])
        return f'"\\"" {CODE_ROOT} "\\""'
    return f'"\\"" {TEXT}{{0,{field.get("maxLength", 300)}}} "\\""'


def literal(text: str) -> str:
    """`text` as a GBNF string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{escaped}"'
