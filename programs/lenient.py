"""Read what a weak model meant when DSPy's adapters cannot parse its answer: field headers
written loosely ('[[ ## name ## ]]', 'name:'), lists as JSON, bullets, numbers or lines."""

from __future__ import annotations

import json
import re
from typing import Any

HEADER = re.compile(r"^\s*(?:\[\[\s*##\s*(\w+)\s*##\s*\]\]|\**(\w+)\**\s*:)\s*(.*)$")
BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


def lenient_parse(signature, text: str) -> dict[str, Any]:
    """Output fields of `signature` found in `text`; missing ones are empty. Text without any
    header counts only as a bulleted or JSON list for a first field that is a list."""
    fields = list(signature.output_fields)
    sections: dict[str, list[str]] = {}
    current = fields[0]
    lines = str(text or "").splitlines()
    headed = any(_header(line) in fields for line in lines)
    if not headed and not (_is_list(signature.output_fields[current].annotation) and _listed(lines)):
        return {name: _value("", signature.output_fields[name].annotation) for name in fields}
    for line in lines:
        name = _header(line)
        if name in fields:
            current = name
            sections.setdefault(current, [])
            rest = HEADER.match(line).group(3).strip()
            if rest:
                sections[current].append(rest)
            continue
        if name == "completed":
            break
        sections.setdefault(current, []).append(line)
    return {
        name: _value("\n".join(sections.get(name, [])).strip(), signature.output_fields[name].annotation)
        for name in fields
    }


def _header(line: str) -> str | None:
    match = HEADER.match(line)
    return (match.group(1) or match.group(2)).lower() if match else None


def _is_list(annotation) -> bool:
    return annotation == list[str]


def _listed(lines: list[str]) -> bool:
    return any(BULLET.match(line) for line in lines) or "".join(lines).strip().startswith("[")


def _value(text: str, annotation) -> Any:
    if not _is_list(annotation):
        return text.splitlines()[0].strip() if text else ""
    try:
        loaded = json.loads(text)
        if isinstance(loaded, list):
            return [str(item).strip() for item in loaded if str(item).strip()]
    except ValueError:
        pass
    lines = [BULLET.sub("", line).strip().strip("\"'") for line in text.splitlines()]
    lines = [line for line in lines if line and line not in "[]"]
    if len(lines) == 1 and ";" in lines[0]:
        lines = [part.strip() for part in lines[0].split(";") if part.strip()]
    return lines
