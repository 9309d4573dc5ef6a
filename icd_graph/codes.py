"""ICD-10-CM code text: normalise user input to the dotted upper-case form the knowledge base stores."""

from __future__ import annotations

import re

from icd_graph.errors import MalformedCode

PLACEHOLDER = "X"

# A category is a letter, then a digit and a digit or letter ('E11', 'C7A'), or a letter and a
# digit ('QA0'); up to four more characters follow the dot.
_CODE = re.compile(r"([A-Z](?:[0-9][0-9A-Z]|[A-Z][0-9]))\.?([0-9A-Z]{0,4})")


def normalize(text: str) -> str:
    """'e119', 'E11.9', ' E11.9 ' -> 'E11.9'; 'W19XXXA' -> 'W19.XXXA'. MalformedCode otherwise."""
    cleaned = text.strip().upper() if isinstance(text, str) else ""
    match = _CODE.fullmatch(cleaned)
    if not match:
        raise MalformedCode(f"{text!r} is not an ICD-10-CM code (expected e.g. 'E11.9' or 'E119')")
    category, rest = match.groups()
    return f"{category}.{rest}" if rest else category


def is_code(text: str) -> bool:
    """True when `normalize` would accept the text."""
    try:
        normalize(text)
    except MalformedCode:
        return False
    return True


def undotted(code: str) -> str:
    """'E11.9' -> 'E119' (the form of claims files and many datasets)."""
    return code.replace(".", "")


def dotted(undotted_code: str) -> str:
    """'E119' -> 'E11.9'; assumes a well-formed code."""
    return f"{undotted_code[:3]}.{undotted_code[3:]}" if len(undotted_code) > 3 else undotted_code


def category(code: str) -> str:
    """The three-character category: 'E11.9' -> 'E11'."""
    return code[:3]


def with_seventh(code: str, char: str) -> str:
    """Append a 7th character, padding with the placeholder X to six characters.

    'W19' + 'A' -> 'W19.XXXA'; 'S00.00' + 'A' -> 'S00.00XA'; 'T51.3X1' + 'A' -> 'T51.3X1A'.
    """
    return dotted(undotted(code).ljust(6, PLACEHOLDER) + char)



_CODE_REF = r"[A-Z][0-9][0-9A-Z](?:\.[0-9A-Z]{1,4})?"
_REF = re.compile(rf"\b({_CODE_REF})(?:\s*-\s*({_CODE_REF})|\.?-)?")


def note_references(text: str) -> list[tuple[str, str | None]]:
    """The codes an instructional note names, as (first, last) ranges: 'L97.4-' -> ('L97.4',
    None), a code or prefix; 'E08-E13' -> ('E08', 'E13'), a range of categories."""
    return [(match.group(1), match.group(2)) for match in _REF.finditer(text)]


def referenced(text: str, code: str) -> bool:
    """True when an instructional note's text names `code`: a code, a prefix ('E10.-') or a range ('E08-E13')."""
    for first, last in note_references(text):
        if last:
            if first[:3] <= code[:3] <= last[:3]:
                return True
        elif code.startswith(first):
            return True
    return False
