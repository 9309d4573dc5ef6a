"""Dataset records as DSPy examples (the only DSPy-aware part of data/)."""

from __future__ import annotations

from collections.abc import Iterable

from data.records import NoteRecord


def to_examples(records: Iterable[NoteRecord]) -> list:
    """dspy.Example(note=text, codes=[...], id=...) with `note` as the input field, plus
    mentions=[{phrase, code}] when the record has gold mentions."""
    import dspy

    examples = []
    for r in records:
        mentions = {"mentions": [{"phrase": m.phrase, "code": m.code} for m in r.mentions]} if r.mentions else {}
        examples.append(dspy.Example(id=r.id, note=r.text, codes=list(r.codes), **mentions).with_inputs("note"))
    return examples
