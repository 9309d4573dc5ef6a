"""Dataset records as DSPy examples (the only DSPy-aware part of data/)."""

from __future__ import annotations

from collections.abc import Iterable

import dspy

from data.records import NoteRecord


class NoteExample(dspy.Example):
    """A dspy.Example printed as its note id: DSPy's optimizers and evaluator log the examples
    that fail, and a clinical note's text must never reach a log."""

    def __repr__(self) -> str:
        return f"note {self.get('id', '(no id)')}"

    __str__ = __repr__


def to_examples(records: Iterable[NoteRecord]) -> list[NoteExample]:
    """NoteExample(note=text, codes=[...], id=...) with `note` as the input field, plus
    mentions=[{phrase, code}] when the record has gold mentions."""
    examples = []
    for r in records:
        mentions = {"mentions": [{"phrase": m.phrase, "code": m.code} for m in r.mentions]} if r.mentions else {}
        examples.append(NoteExample(id=r.id, note=r.text, codes=list(r.codes), **mentions).with_inputs("note"))
    return examples
