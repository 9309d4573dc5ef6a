from data.dspy_examples import to_examples
from data.records import NoteRecord


def test_records_become_examples_with_the_note_as_input():
    (example,) = to_examples([NoteRecord("n1", "Essential hypertension.", ("I10",))])
    assert example.inputs().toDict() == {"note": "Essential hypertension."}
    assert example.labels().toDict() == {"id": "n1", "codes": ["I10"]}


def test_an_example_prints_as_its_note_id_never_its_text():
    (example,) = to_examples([NoteRecord("n1", "Zebulon Quartermaine has gout.", ("M10.9",))])
    for shown in (repr(example), str(example), repr(example.copy()), str(example.inputs()), f"{[example]}"):
        assert "Zebulon" not in shown
    assert str(example) == "note n1"
