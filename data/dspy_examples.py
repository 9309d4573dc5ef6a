"""Dataset records as DSPy examples (the only DSPy-aware part of data/)."""

from __future__ import annotations

from collections.abc import Iterable

from data.records import NoteRecord


def to_examples(records: Iterable[NoteRecord]) -> list:
    """dspy.Example(note=text, codes=[...], id=...) with `note` as the input field."""
    import dspy

    return [dspy.Example(id=r.id, note=r.text, codes=list(r.codes)).with_inputs("note") for r in records]
