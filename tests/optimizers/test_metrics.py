import pytest

from data.records import Evidence
from optimizers.metrics import aggregate, code_f1, paired_bootstrap, score_note, span_tokens


@pytest.fixture
def scores():
    return aggregate(
        [
            score_note("n1", ["E11.9", "I10"], ["E11.9", "E11.65"]),
            score_note("n2", ["J45.909"], ["J45.909"]),
            score_note("n3", ["M17.11"], []),
        ]
    )


def test_micro_pools_decisions_over_notes(scores):
    # tp 2, fp 1 (E11.65), fn 2 (I10, M17.11)
    assert scores.micro.precision == pytest.approx(2 / 3)
    assert scores.micro.recall == pytest.approx(1 / 2)
    assert scores.micro.f1 == pytest.approx(4 / 7)


def test_macro_averages_over_codes_in_gold_or_predictions(scores):
    # E11.9 and J45.909 perfect; I10, E11.65, M17.11 zero
    assert scores.macro.precision == pytest.approx(2 / 5)
    assert scores.macro.recall == pytest.approx(2 / 5)
    assert scores.macro.f1 == pytest.approx(2 / 5)


def test_category_level_uses_first_three_characters(scores):
    # n1: gold {E11, I10} pred {E11}; n2 J45 right; n3 M17 missed
    assert scores.category_micro.precision == pytest.approx(1.0)
    assert scores.category_micro.recall == pytest.approx(1 / 2)
    assert scores.category_micro.f1 == pytest.approx(2 / 3)
    assert scores.category_macro.f1 == pytest.approx(1 / 2)


def test_exact_match_and_per_note(scores):
    assert scores.exact_match == pytest.approx(1 / 3)
    assert [n.exact for n in scores.notes] == [False, True, False]
    assert scores.evidence is None
    per_note = scores.as_dict()["per_note"]
    assert [n["f1"] for n in per_note] == pytest.approx([0.5, 1.0, 0.0])


def test_code_f1_per_example():
    assert code_f1(["E11.9", "I10"], ["E11.9", "E11.65"]) == pytest.approx(0.5)
    assert code_f1([], []) == 1.0
    assert code_f1(["I10"], []) == 0.0
    assert code_f1(["I10", "I10"], ["I10"]) == 1.0


def test_evidence_token_overlap_for_correct_codes_only():
    text = "Type 2 diabetes without complications. Hypertension noted."
    gold = [Evidence("E11.9", 0, 15), Evidence("I10", 39, 51)]
    predicted = [Evidence("E11.9", 5, 23)]  # "2 diabetes without"
    assert span_tokens(text, gold[:1]) == {0, 1, 2}
    note = score_note("n", ["E11.9", "I10"], ["E11.9"], text=text, gold_evidence=gold, predicted_evidence=predicted)
    # only E11.9 is scored (I10 was not predicted): gold {0,1,2}, predicted {1,2,3}
    assert (note.evidence.tp, note.evidence.fp, note.evidence.fn) == (2, 1, 1)
    assert aggregate([note]).evidence.f1 == pytest.approx(2 / 3)


def test_evidence_of_a_correct_code_without_predicted_spans_counts_as_missed():
    text = "Hypertension noted."
    note = score_note("n", ["I10"], ["I10"], text=text, gold_evidence=[Evidence("I10", 0, 12)])
    assert note.evidence.f1 == 0.0


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    gold = [["A00.0"], ["B00.0"], ["C00.0"], ["D00.0"], ["E00.0"], ["F00.0"]]
    a = [score_note(str(i), g, []) for i, g in enumerate(gold)]
    b = [score_note(str(i), g, g) for i, g in enumerate(gold)]
    result = paired_bootstrap(a, b, resamples=200, seed=1)
    assert (result.a, result.b, result.delta, result.low, result.high) == (0.0, 1.0, 1.0, 1.0, 1.0)
    assert result.significant

    mixed = [score_note(str(i), g, g if i % 2 else []) for i, g in enumerate(gold)]
    first = paired_bootstrap(mixed, b, resamples=500, seed=3)
    assert first == paired_bootstrap(mixed, b, resamples=500, seed=3)
    assert first.delta == pytest.approx(1 / 3)  # mixed finds 3 of 6: F1 = 6 / 9
    assert 0 <= first.low <= first.delta <= first.high <= 1

    same = paired_bootstrap(b, b, resamples=100)
    assert (same.delta, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)


def test_paired_bootstrap_rejects_different_notes():
    with pytest.raises(ValueError):
        paired_bootstrap([score_note("a", ["I10"], [])], [score_note("b", ["I10"], [])])
