from icd_graph.search import Searcher, stem, tokenize
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
