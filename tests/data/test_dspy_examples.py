from data.dspy_examples import to_examples
from data.records import NoteRecord


def test_records_become_examples_with_the_note_as_input():
    (example,) = to_examples([NoteRecord("n1", "Essential hypertension.", ("I10",))])
    assert example.inputs().toDict() == {"note": "Essential hypertension."}
    assert example.labels().toDict() == {"id": "n1", "codes": ["I10"]}
