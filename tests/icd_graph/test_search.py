import duckdb
import numpy as np
import pytest

from icd_graph.build import build, search_dir_for
from icd_graph.search import (
    ADDITIONAL,
    BILATERAL,
    Searcher,
    additional_codes,
    contradicts,
    description_flags,
    index_phrases,
    query_flags,
    tabular_phrase,
    unsided_variants,
)
from icd_graph.vocabulary import EPONYMS, WORD, fold, tokenize


def test_persisted_indexes(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    hits = searcher.search("hypertension", k=10, source="index")
    assert "I10" in [h.code for h in hits]
    fused = searcher.search("fracture of neck of right femur", k=10, source="all")
    assert fused and fused[0].code.startswith("S72.0")
    assert all(len(h.code.replace(".", "")) == 7 for h in fused if h.code.startswith("S72"))


@pytest.mark.parametrize("query", ["hypertension", "disease of", "type 2 diabetes mellitus with foot ulcer", "zzzz", "fracture"])
def test_a_nodes_best_phrase_score_is_the_maximum_over_all_its_phrases(kb_path, query):
    """Read from the phrases that score (`_node_best`): equal to numpy's maximum over every
    phrase of every node, for a rare word, common words, a long query and an unknown word."""
    from icd_graph.search import _scores

    searcher = Searcher(search_dir_for(kb_path))
    searcher.load()
    scores = _scores(searcher.tabular, tokenize(query))
    positions = searcher.phrase_positions
    every = np.maximum.reduceat(scores, np.flatnonzero(np.r_[True, positions[1:] != positions[:-1]]))
    assert np.array_equal(searcher._node_best(scores), every)
    assert (every > 0).any() == (query != "zzzz")


def test_tabular_phrase_keeps_default_and_encounter_words_nonessential():
    essential, nonessential = tabular_phrase("Osteoarthritis, unspecified site")
    assert essential == {"osteoarthritis"} and {"unspecified", "site"} <= nonessential
    essential, nonessential = tabular_phrase(
        "Colles' fracture of right radius, subsequent encounter for closed fracture with routine healing"
    )
    assert essential == set(tokenize("Colles fracture right radius"))
    assert "routin" in nonessential
    essential, nonessential = tabular_phrase("Nicotine dependence, unspecified, uncomplicated")
    assert essential == set(tokenize("nicotine dependence"))
    essential, _ = tabular_phrase("Nicotine dependence, unspecified, with unspecified nicotine-induced disorders")
    assert essential == set(tokenize("nicotine dependence induced disorders"))
    essential, nonessential = tabular_phrase("Unspecified atrial fibrillation")  # a first clause is the condition
    assert essential == set(tokenize("atrial fibrillation")) and nonessential == {"unspecified"}


def test_index_phrases_hold_nec_and_nos_nonessential():
    rows = [(1, None, 0, "Pain", ""), (2, 1, 1, "neck NEC", "")]
    assert index_phrases(rows)[2] == (frozenset(tokenize("pain neck")), frozenset(tokenize("NEC")))


def test_short_exact_mentions_rank_their_default_code_first(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    assert "I10" in [h.code for h in searcher.search("Hypertension", k=3)]
    assert "I10" in [h.code for h in searcher.search("hypertension", k=3, source="index")]
    assert searcher.search("asthma", k=5)[0].code.startswith("J45")
    assert searcher.search("COPD", k=5)[0].code.startswith("J44")
    assert searcher.search("Type 2 diabetes", k=1)[0].code == "E11.9"
    assert searcher.search("Congestive heart failure", k=1)[0].code == "I50.9"


@pytest.mark.parametrize(("query", "first"), [
    ("Type 2 diabetes mellitus", "E11.9"),
    ("Diabetes mellitus type 2", "E11.9"),
    ("Nicotine dependence", "F17.200"),
    ("Alcohol dependence", "F10.20"),
])
def test_a_category_the_query_names_gives_way_to_the_index_code(kb_path, query, first):
    """The query names a category exactly ('Type 2 diabetes mellitus', E11): the index term it
    names gives the code (E11.9), not the category's child that scores best by its words
    (E11.21, '... with diabetic nephropathy'); 'uncomplicated' is a default, not a word to name."""
    assert Searcher(search_dir_for(kb_path)).search(query, k=1)[0].code == first


@pytest.mark.parametrize(("query", "first"), [
    ("Hypertension, well controlled", "I10"),
    ("Asthma - doing well", "J45.909"),
    ("Type 2 diabetes mellitus, stable", "E11.9"),
    ("Hyperlipidemia, stable on current medications", "E78.5"),
    ("Depression, well-controlled", "F32.A"),
])
def test_the_status_of_a_condition_does_not_change_its_code(kb_path, query, first):
    """'well' is no longer Wells' disease or 'Worried well', 'stable' no longer a stable
    proliferative retinopathy: the condition's code comes first, as without the status."""
    searcher = Searcher(search_dir_for(kb_path))
    assert searcher.search(query, k=1)[0].code == first
    assert searcher.search(query.split(",")[0].split(" - ")[0], k=1)[0].code == first


def test_one_encounter_variant_per_code_before_the_others(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    codes = [h.code for h in searcher.search("Colles fracture of right radius", k=200)]
    assert codes[0] == "S52.531A"
    groups = [code[:-1] if len(code.replace(".", "")) == 7 else code for code in codes]
    first_repeat = next(i for i, group in enumerate(groups) if group in groups[:i])
    assert len(set(groups[first_repeat:]) - set(groups[:first_repeat])) == 0
    assert codes.index("S52.531D") >= first_repeat
    sprain = [h.code for h in searcher.search("right knee sprain", k=10)]
    assert sprain[0] == "S83.91XA"
    assert not {"S83.91XD", "S83.91XS"} & set(sprain)
    assert len({code[:7] for code in sprain}) == len(sprain)


def test_codes_naming_another_side_limb_or_a_history_rank_lower(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    neuropathy = [h.code for h in searcher.search("Left upper extremity neuropathy", k=10)]
    assert "G56.92" in neuropathy
    assert not [code for code in neuropathy if code.startswith("G57.9")]
    stone = [h.code for h in searcher.search("kidney stone", k=5)]
    assert stone[0] == "N20.0" and "Z87.442" not in stone
    assert "Z87.442" in [h.code for h in searcher.search("history of kidney stones", k=3)]


@pytest.mark.parametrize(("query", "first"), [
    ("Osteoarthritis of both knees", "M17.0"),
    ("Carpal tunnel syndrome, both wrists", "G56.03"),
    ("Sensorineural hearing loss, both ears", "H90.3"),
])
def test_both_sides_rank_the_bilateral_code_first(kb_path, query, first):
    assert Searcher(search_dir_for(kb_path)).search(query, k=5)[0].code == first


def test_contradiction_flags():
    assert contradicts(query_flags("right knee"), description_flags("Sprain of left knee"))
    assert not contradicts(query_flags("right knee"), description_flags("Sprain of unspecified knee"))
    assert contradicts(query_flags("upper limb"), description_flags("Mononeuropathy of lower limb"))
    assert contradicts(0, description_flags("Personal history of urinary calculi"))
    assert not contradicts(query_flags("history of stones"), description_flags("Personal history of urinary calculi"))
    # 'both' names two sides, as tokenize reads it, except in 'both X and Y'
    assert contradicts(query_flags("Osteoarthritis of both knees"), description_flags("Unilateral primary osteoarthritis, right knee"))
    assert query_flags("Disease of both mitral and aortic valves") == 0
    assert query_flags("Carpal tunnel syndrome, both wrists") == BILATERAL


def test_see_references_point_to_their_target(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    assert "N20.0" in [h.code for h in searcher.search("nephrolithiasis", k=5)]


def test_misspelled_words_are_corrected_against_the_indexes(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    assert searcher.search("ransient tics", k=1)[0].code == "F95.0"


def test_see_references_are_followed_with_the_query_site(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    assert "M16.11" in [h.code for h in searcher.search("Right hip degenerative joint disease", k=20)]
    assert "D35.2" in [h.code for h in searcher.search("Pituitary adenoma", k=10)]


def test_unspecified_codes_bring_the_sibling_that_names_the_query_site(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    facet = [h.code for h in searcher.search("facet arthropathy C6-7", k=20)]
    assert "M47.812" in facet
    assert facet.index("M47.812") < facet.index("M47.819")
    assert searcher.search("Chest pain", k=1)[0].code == "R07.9"


def test_a_main_term_matches_exactly_in_any_of_its_spellings(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    assert searcher.search("Hyperlipidemia", k=1)[0].code == "E78.5"
    assert searcher.search("hyperlipemia", k=1)[0].code == "E78.5"


def test_proximal_and_distal_reach_the_upper_and_lower_end_of_a_bone(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    # no side named: the unspecified radius / tibia, as a coder would code it
    assert searcher.search("distal radius fracture", k=1)[0].code == "S52.509A"
    tibia = [h.code for h in searcher.search("proximal tibia fracture", k=5)]
    assert "S82.109A" in tibia and tibia.index("S82.109A") < tibia.index("S82.101A")


@pytest.mark.parametrize(
    "query, first",
    [
        ("wrist sprain", "S63.509A"), ("right wrist sprain", "S63.501A"),
        ("shoulder pain", "M25.519"), ("left shoulder pain", "M25.512"),
        ("otitis media", "H66.90"), ("bilateral otitis media", "H66.93"),
        ("carpal tunnel syndrome", "G56.00"),
        # 'bilateral' is the condition itself here, not a side: no unspecified-side variant
        ("bitemporal hemianopia", "H53.47"),
    ],
)
def test_a_query_without_a_side_ranks_the_unspecified_side_first(kb_path, query, first):
    assert Searcher(search_dir_for(kb_path)).search(query, k=1)[0].code == first


def test_unsided_variants_pair_a_sided_code_with_the_same_code_of_unspecified_side():
    descriptions = [
        "Fracture of lower end of radius",
        "Fracture of lower end of right radius",
        "Fracture of lower end of right radius, initial encounter",
        "Fracture of lower end of right radius, sequela",
        "Fracture of lower end of left radius",
        "Fracture of lower end of left radius, initial encounter",
        "Fracture of lower end of left radius, sequela",
        "Fracture of lower end of unspecified radius",
        "Fracture of lower end of unspecified radius, initial encounter",
        "Fracture of lower end of unspecified radius, sequela",
        "Heteronymous bilateral field defects",
    ]
    depth = np.array([4, 5, 6, 6, 5, 6, 6, 5, 6, 6, 5])
    groups = np.array([0, 1, 1, 1, 4, 4, 4, 7, 7, 7, 10])
    flags = np.array([description_flags(d) for d in descriptions])
    assert unsided_variants(descriptions, depth, groups, flags).tolist() == [-1, 7, 8, 9, 7, 8, 9, -1, -1, -1, -1]


EPONYM_CODES = {
    "Lisfranc fracture": "S93.32", "Chopart dislocation": "S93.31", "boxer's fracture": "S62.33",
    "Jones fracture": "S92.35", "Bankart lesion": "S43.43", "Jefferson fracture": "S12.0",
    "hangman's fracture": "S12.1", "Segond fracture": "S82.12", "Tillaux fracture": "S89.13",
    "Essex-Lopresti fracture": "S52.12", "jumper's knee": "M76.5", "runner's knee": "M22.2",
    "gamekeeper's thumb": "S63.64", "skier's thumb": "S63.64",
}


def test_every_eponym_fills_a_gap_in_the_index_and_reaches_its_codes(kb_path):
    def words(text: str) -> str:
        return " " + " ".join(WORD.findall(fold(text).replace("'s", ""))) + " "

    with duckdb.connect(str(kb_path), read_only=True) as con:
        paths = [words(path) for (path,) in con.execute("SELECT path FROM index_terms").fetchall()]
    queries = [words(query) for query in EPONYM_CODES]
    for eponym in EPONYMS:
        assert any(f" {eponym} " in query for query in queries), eponym
        assert not [path for path in paths if f" {eponym} " in path], eponym
    searcher = Searcher(search_dir_for(kb_path))
    for query, prefix in EPONYM_CODES.items():
        assert any(h.code.startswith(prefix) for h in searcher.search(query, k=5)), query


def test_accented_names_match_unaccented_queries(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    assert searcher.search("Sjogren syndrome", k=1)[0].code.startswith("M35.0")


def test_use_additional_code_notes_are_read_as_node_references():
    position = {"B95": 0, "B96": 1, "B97": 2, "E11.621": 3, "L97.4": 4, "L97.5": 5, "N39.0": 6}
    notes = [("E11.621", "code to identify site of ulcer (L97.4-, L97.5-)"), ("N39.0", "code (B95-B97), to identify infectious agent")]
    assert additional_codes(notes, position) == {"3": [4, 5], "6": [0, 1, 2]}


def test_use_additional_code_of_the_best_hit_brings_the_codes_the_query_names(kb_path):
    searcher = Searcher(search_dir_for(kb_path))
    ulcer = searcher.search("Right non-healing diabetic foot ulcer", k=50)
    assert ulcer[0].code == "E11.621"
    paired = [h.code for h in ulcer if ADDITIONAL in h.source.split("+")]
    assert "L97.519" in paired and "L97.419" in paired
    assert not [code for code in paired if not code.startswith(("L97.41", "L97.51"))]
    assert not [h for h in searcher.search("Type 2 diabetes", k=50) if ADDITIONAL in h.source.split("+")]


@pytest.fixture(scope="module")
def tabular_only(icd_source, tmp_path_factory):
    """A knowledge base of the real tabular list alone, as `make demo` builds without CMS files."""
    folder = tmp_path_factory.mktemp("tabular-only")
    (folder / "source").mkdir()
    for tabular in icd_source.glob("*tabular*.xml*"):
        (folder / "source" / tabular.name).symlink_to(tabular)
    build(source=folder / "source", db=folder / "kb.duckdb")
    return Searcher(search_dir_for(folder / "kb.duckdb"))


def test_without_the_index_a_residual_other_category_ranks_after_the_condition_itself(tabular_only):
    assert tabular_only.search("Hyperlipidemia", k=1)[0].code == "E78.5"
    assert tabular_only.search("Obesity", k=1)[0].code == "E66.9"
    assert "E78.49" in [h.code for h in tabular_only.search("Other hyperlipidemia", k=3)]


@pytest.mark.parametrize("query", ["fracture of femur", "otitis media", "diabetic foot ulcer", "pain in knee", "zzzz"])
def test_the_candidates_of_a_list_ranked_together_keep_each_one_s_own_best(kb_path, query):
    """`_best_of` ranks the 50 candidates of a list in one sort: each candidate's codes are those
    it gives ranked alone, for sided and unsided queries, index terms (targets) and tabular
    subtrees (ranges), empty candidates included."""
    from icd_graph.search import CANDIDATES, EXPANSION, Scored, _scores, _top

    searcher = Searcher(search_dir_for(kb_path))
    searcher.load()
    tokens = tokenize(query)
    for sided in (False, True):
        scored = Scored(searcher._tabular_scores(tokens), searcher._words(tokens), sided)
        docs = np.array(_top(_scores(searcher.index, tokens), CANDIDATES) + [0], dtype=np.int64)
        starts, ends = searcher.offsets[docs], searcher.offsets[docs + 1]
        alone = [searcher._best_of(starts[i : i + 1], ends[i : i + 1], scored, searcher.targets)[0] for i in range(len(docs))]
        assert searcher._best_of(starts, ends, scored, searcher.targets) == alone
        nodes = np.array(_top(scored.scores, CANDIDATES) + [len(searcher.codes) - 1], dtype=np.int64)
        alone = [searcher._best_of(nodes[i : i + 1] + 1, searcher.end[nodes[i : i + 1]], scored)[0] for i in range(len(nodes))]
        assert searcher._best_of(nodes + 1, searcher.end[nodes], scored) == alone
        assert query == "zzzz" or any(len(best) > 1 for best in alone)
    for start, end, best in zip(nodes + 1, searcher.end[nodes], alone):  # sided: the range's EXPANSION best last
        billable = [p for p in range(start, end) if searcher.billable[p]]
        ranked = sorted(billable, key=lambda p: (-scored.scores[p], searcher.depth[p], p))[:EXPANSION]
        assert best[len(best) - len(ranked):] == ranked
