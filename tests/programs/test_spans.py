import pytest

from programs.spans import locate

NOTE = "Pt has TYPE 2  diabetes mellitus.\nBP well controlled on lisinopril. No chest pain."


def check(evidence):
    if evidence.span:
        assert NOTE[evidence.span.start : evidence.span.end] == evidence.span.text


@pytest.mark.parametrize(
    "quote, match, text",
    [
        ('"BP well controlled on lisinopril"', "exact", "BP well controlled on lisinopril"),
        ("type 2 diabetes mellitus", "normalized", "TYPE 2  diabetes mellitus"),
        ("blood pressure is well controlled on lisinopril", "fuzzy", "BP well controlled on lisinopril."),
        ("hepatic encephalopathy", "none", None),
        ("hypertension well managed", "none", None),  # one word in common: below the threshold
        ("lisinopril well tolerated", "none", None),  # Dice 2 * 2 / (3 + 5) = 0.5
        ("well controlled on metoprolol today", "fuzzy", "BP well controlled on lisinopril."),  # 0.6
        ("lisinopril controlled well", "fuzzy", "BP well controlled on lisinopril."),  # shorter than the sentence, words reordered
        ("well controlled lisinopril", "fuzzy", "well controlled on lisinopril"),  # aligned, widened to whole words
        ("no pain in the chest", "fuzzy", "No chest pain."),  # a sentence after a space
        ("Pt has", "exact", "Pt has"),  # at offset 0
        ("", "none", None),
        (".", "none", None),  # no word: not matched to the note's full stops
    ],
)
def test_locate(quote, match, text):
    evidence = locate(NOTE, quote)
    check(evidence)
    assert evidence.match == match
    assert (evidence.span.text if evidence.span else None) == text
    assert evidence.quote == quote


def test_a_sentence_without_words_does_not_end_the_fuzzy_search():
    note = "---\nBP well controlled on lisinopril."
    evidence = locate(note, "blood pressure is well controlled on lisinopril")
    assert (evidence.match, evidence.span.text) == ("fuzzy", "BP well controlled on lisinopril.")


def test_of_equally_close_sentences_the_first_is_quoted():
    note = "BP well controlled on lisinopril. BP well controlled on lisinopril."
    evidence = locate(note, "blood pressure well controlled on lisinopril")
    assert (evidence.match, evidence.span.start, evidence.span.end) == ("fuzzy", 0, 33)


@pytest.mark.parametrize(
    "note, quote, start, text",
    [
        (NOTE, "ontroled on lisinopril", 42, "controlled on lisinopril"),  # aligned mid-word: widened left
        ("Hypertension.", "Hypertensoin.", 0, "Hypertension."),  # as long as the note
        ("Hypertension well controlled on lisinopril", "ypertensoin well", 0, "Hypertension well"),  # to the note's start
        ("Hypertension well controlled on lisinopril", "controlled on lisinoprl", 18, "controlled on lisinopril"),  # to its end
        ("BP(well controlled on lisinopril)", "wel controlled on lisinopril", 3, "well controlled on lisinopril"),
        ("Plan:  BP well controled", "bp well controlled", 7, "BP well controled"),
        ("Assessment: hypertension well controlled", "x hypertension well controlled", 12, "hypertension well controlled"),  # aligned from a space
    ],
)
def test_a_misspelt_quote_is_aligned_to_whole_words_of_the_note(note, quote, start, text):
    evidence = locate(note, quote)
    assert (evidence.match, evidence.span.start, evidence.span.text) == ("fuzzy", start, text)
    assert note[evidence.span.start : evidence.span.end] == text

