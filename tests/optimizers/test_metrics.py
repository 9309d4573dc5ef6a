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


def test_macro_f1_is_the_mean_of_per_code_f1_not_the_f1_of_macro_p_and_r():
    # A00.0: gold in 4 notes, predicted in 1 of them: P 1, R 1/4, F1 2/5.
    # B00.0: gold in 1 note, predicted in 4: P 1/4, R 1, F1 2/5.
    # Macro P = macro R = 5/8, whose harmonic mean (5/8) is not the mean per-code F1 (2/5).
    notes = [score_note("n0", ["A00.0", "B00.0"], ["A00.0", "B00.0"])]
    notes += [score_note(f"n{i}", ["A00.0"], ["B00.0"]) for i in (1, 2, 3)]
    scores = aggregate(notes)
    assert (scores.macro.precision, scores.macro.recall) == (pytest.approx(5 / 8), pytest.approx(5 / 8))
    assert scores.macro.f1 == pytest.approx(2 / 5)
    # category level: A00 and B00 behave like their codes
    assert scores.category_macro.f1 == pytest.approx(2 / 5)
    # micro pools: tp 2, fp 3, fn 3
    assert scores.micro.f1 == pytest.approx(4 / 10)


def six_notes(right: set[int]) -> list:
    """Six notes of one gold code each; the system finds the codes of the notes in `right`."""
    gold = [["A00.0"], ["B00.0"], ["C00.0"], ["D00.0"], ["E00.0"], ["F00.0"]]
    return [score_note(str(i), g, g if i in right else []) for i, g in enumerate(gold)]


def test_paired_bootstrap_interval_is_the_percentile_interval_of_resampled_differences():
    # b finds all six codes, `half` three of them. A resample holding k of half's three found
    # notes gives half F1 = 2k / (k + 6) and b F1 = 1, so the difference is (6 - k) / (k + 6)
    # with k ~ Binomial(6, 1/2): P(k = 6) = 1/64 < 2.5% < P(k >= 5) = 7/64, so the 2.5th
    # percentile is k = 5 (1/11); likewise the 97.5th is k = 1 (5/7). The extremes (k = 6: 0,
    # k = 0: 1) turn up in 2,000 resamples but are not the interval.
    half, b = six_notes({1, 3, 5}), six_notes(set(range(6)))
    result = paired_bootstrap(half, b, resamples=2000, seed=0)
    assert (result.a, result.b) == (pytest.approx(2 / 3), 1.0)
    assert result.delta == pytest.approx(1 / 3)
    assert result.low == pytest.approx(1 / 11)
    assert result.high == pytest.approx(5 / 7)
    assert result.significant and (result.resamples, result.confidence) == (2000, 0.95)
    assert result == paired_bootstrap(half, b, resamples=2000, seed=0)

    # a 50% interval: the quartiles, k = 4 (P(k >= 4) = 22/64 > 25% > P(k >= 5)) and k = 2
    quartiles = paired_bootstrap(half, b, resamples=2000, confidence=0.5, seed=0)
    assert (quartiles.low, quartiles.high) == (pytest.approx(2 / 10), pytest.approx(4 / 8))

    everything = paired_bootstrap(six_notes(set()), b, resamples=200, seed=1)
    assert (everything.a, everything.b, everything.delta, everything.low, everything.high) == (0.0, 1.0, 1.0, 1.0, 1.0)


def test_paired_bootstrap_resamples_the_same_notes_for_both_systems():
    # A system against itself differs by 0 on every resample only when both are resampled together.
    half = six_notes({1, 3, 5})
    same = paired_bootstrap(half, half, resamples=500, seed=2)
    assert (same.delta, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)
    # b finds every code a finds on every note, and one more on two notes: with the notes paired
    # no resample can favour a, so the interval starts at 0 or above.
    a, b = six_notes({0, 1, 2}), six_notes({0, 1, 2, 3, 4})
    better = paired_bootstrap(a, b, resamples=1000, seed=3)
    assert better.delta == pytest.approx(10 / 11 - 2 / 3)
    assert 0.0 <= better.low < better.delta < better.high


def test_paired_bootstrap_rejects_different_notes():
    with pytest.raises(ValueError):
        paired_bootstrap([score_note("a", ["I10"], [])], [score_note("b", ["I10"], [])])


def test_counts_at_their_edges():
    from optimizers.metrics import Counts

    assert (Counts(1, 1, 0).precision, Counts(1, 1, 0).recall, Counts(1, 1, 0).f1) == (0.5, 1.0, pytest.approx(2 / 3))
    assert (Counts(1, 0, 1).precision, Counts(1, 0, 1).recall, Counts(1, 0, 1).f1) == (1.0, 0.5, pytest.approx(2 / 3))
    assert (Counts(0, 2, 1).precision, Counts(0, 2, 1).recall, Counts(0, 2, 1).f1) == (0.0, 0.0, 0.0)
    assert (Counts().precision, Counts().recall, Counts().f1) == (0.0, 0.0, 0.0)
    assert code_f1(["I10", "E11.9"], ["I10"]) == pytest.approx(2 / 3)
    assert code_f1(["I10"], ["I10", "E11.9"]) == pytest.approx(2 / 3)


def test_nothing_to_score_scores_zero_but_an_empty_note_predicted_empty_is_exact():
    empty = aggregate([])
    assert (empty.micro.f1, empty.macro.f1, empty.exact_match, empty.evidence) == (0.0, 0.0, 0.0, None)
    nothing = aggregate([score_note("n", [], [])])
    assert (nothing.micro.f1, nothing.macro.precision, nothing.macro.recall, nothing.macro.f1) == (0.0, 0.0, 0.0, 0.0)
    assert nothing.exact_match == 1.0 and code_f1([], []) == 1.0


def test_span_tokens_touching_a_span_are_outside_it():
    text = "Hypertension,controlled"
    assert span_tokens(text, [Evidence("I10", 0, 13)]) == {0}  # ends where 'controlled' starts
    assert span_tokens(text, [Evidence("I10", 12, 23)]) == {1}  # starts where 'Hypertension' ends
    assert span_tokens(text, [Evidence("I10", 11, 14)]) == {0, 1}
