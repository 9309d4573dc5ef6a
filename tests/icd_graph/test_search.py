from icd_graph.search import Searcher, stem, tabular_phrase, tokenize
from icd_graph.build import search_dir_for


def test_tokens_and_stems():
    assert stem("diabetes") == stem("diabetic") == "diabet"
    assert stem("fractures") == stem("fracture")
    assert tokenize("Type 2 diabetes with retinopathy") == ["type", "2", "diabet", "retinopathy"]


def test_persisted_indexes(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    hits = searcher.search("hypertension", k=10, source="index")
    assert "I10" in [h.code for h in hits]
    fused = searcher.search("fracture of neck of right femur", k=10, source="all")
    assert fused and fused[0].code.startswith("S72.0")
    assert all(len(h.code.replace(".", "")) == 7 for h in fused if h.code.startswith("S72"))


def test_abbreviations_and_roman_numerals():
    assert tokenize("COPD") == tokenize("chronic obstructive pulmonary disease")
    assert tokenize("diabetes type II") == tokenize("diabetes type 2")


def test_tabular_phrase_keeps_default_and_encounter_words_nonessential():
    essential, nonessential = tabular_phrase("Osteoarthritis, unspecified site")
    assert essential == {"osteoarthritis"} and {"unspecified", "site"} <= nonessential
    essential, nonessential = tabular_phrase(
        "Colles' fracture of right radius, subsequent encounter for closed fracture with routine healing"
    )
    assert essential == set(tokenize("Colles fracture right radius"))
    assert "routin" in nonessential


def test_short_exact_mentions_rank_their_default_code_first(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    assert "I10" in [h.code for h in searcher.search("Hypertension", k=3)]
    assert "I10" in [h.code for h in searcher.search("hypertension", k=3, source="index")]
    assert searcher.search("asthma", k=5)[0].code.startswith("J45")
    assert searcher.search("COPD", k=5)[0].code.startswith("J44")
    assert searcher.search("Type 2 diabetes", k=1)[0].code == "E11.9"
    assert searcher.search("Congestive heart failure", k=1)[0].code == "I50.9"


def test_initial_encounter_before_subsequent_and_sequela(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    codes = [h.code for h in searcher.search("Colles fracture of right radius", k=20)]
    assert codes[0] == "S52.531A"
    assert codes.index("S52.531A") < codes.index("S52.531D") < codes.index("S52.531S")
    sprain = [h.code for h in searcher.search("right knee sprain", k=5)]
    assert sprain[:3] == ["S83.91XA", "S83.91XD", "S83.91XS"]


def test_see_references_point_to_their_target(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    assert "N20.0" in [h.code for h in searcher.search("nephrolithiasis", k=5)]
