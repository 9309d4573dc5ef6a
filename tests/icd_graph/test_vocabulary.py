import pytest

from icd_graph.vocabulary import spelled_out, spelling_variants, stem, tokenize, without_status


def test_tokens_and_stems():
    assert stem("diabetes") == stem("diabetic") == "diabet"
    assert stem("fractures") == stem("fracture")
    assert tokenize("Type 2 diabetes with retinopathy") == ["type", "2", "diabet", "retinopathy"]


def test_abbreviations_and_roman_numerals():
    assert tokenize("COPD") == tokenize("chronic obstructive pulmonary disease")
    assert tokenize("diabetes type II") == tokenize("diabetes type 2")


def test_synonyms_spinal_levels_and_short_plurals():
    assert tokenize("renal failure") == tokenize("kidney failure")
    assert tokenize("exam") == tokenize("examination")
    assert tokenize("DM2") == tokenize("type 2 diabetes mellitus") and tokenize("Hx") == tokenize("history")
    assert tokenize("BPH with LUTS") == tokenize("benign prostatic hyperplasia with lower urinary tract symptoms")
    assert tokenize("upper extremities") == tokenize("upper limb")
    assert tokenize("distal radius") == tokenize("lower radius")
    assert tokenize("C5-6") == tokenize("C5-C6") == ["c5", stem("cervical"), "c6"]
    assert stem("tics") == "tic" and stem("hips") == "hip" and stem("less") == "less"


def test_both_sides_are_bilateral_but_both_of_two_conditions_are_not():
    assert tokenize("Osteoarthritis of both knees") == tokenize("osteoarthritis of bilateral knees")
    assert tokenize("both knees") == tokenize("bilateral knees") and tokenize("blindness, both eyes")[1] == "bilateral"
    assert "both" in tokenize("rheumatic disorders of both mitral and aortic valves")
    assert "bilateral" not in tokenize("varicose veins with both ulcer and inflammation")


def test_spelling_variants_are_one_edit_away():
    assert "transient" in spelling_variants("ransient")
    assert "tics" in spelling_variants("tcis") and "ransient" not in spelling_variants("ransient")


def test_accents_possessives_and_eponyms_are_spelled_out():
    assert tokenize("Sjögren's syndrome") == tokenize("Sjogren syndrome")
    assert tokenize("Crohn's disease") == tokenize("Crohn disease")
    assert spelled_out("Lisfranc's fracture, right") == "tarsometatarsal joint dislocation fracture, right"
    assert spelled_out("boxer's fracture") == spelled_out("Boxer fracture") == "fracture neck fifth metacarpal"
    assert spelled_out("skier's thumb") == spelled_out("gamekeeper's thumb")
    assert spelled_out("jones") == "jones" and spelled_out("ajumper knee") == "ajumper knee"


@pytest.mark.parametrize(("text", "condition"), [
    ("Hypertension, well controlled", "Hypertension"),
    ("Hypertension - well-controlled.", "Hypertension"),
    ("Well controlled hypertension", "hypertension"),
    ("HTN: under good control", "HTN"),
    ("Type 2 diabetes, stable", "Type 2 diabetes"),
    ("Asthma (stable)", "Asthma"),
    ("Left knee pain - improving", "Left knee pain"),
    ("Hyperlipidemia, stable on current medications", "Hyperlipidemia"),
    ("Depression, doing well on sertraline", "Depression, on sertraline"),
])
def test_the_status_of_a_condition_is_not_part_of_it(text, condition):
    assert without_status(text) == condition


@pytest.mark.parametrize("text", [
    "Diabetes, poorly controlled", "Type 2 diabetes, uncontrolled", "Gestational diabetes, diet-controlled",
    "Stable angina", "Worried well", "Fall into well", "stable",
])
def test_words_the_classification_codes_stay(text):
    """A status the index codes (diabetes poorly controlled or uncontrolled: with hyperglycemia;
    gestational diabetes diet controlled), a status word before its condition, a condition named
    with 'well', and a text that is nothing but a status."""
    assert without_status(text) == text
