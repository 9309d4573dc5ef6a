"""Tune the weight of the dense list in the fused search on ACI-BENCH train; other splits are
printed for the record, never used to choose.

Diagnoses (`search.WEIGHTS['dense']`): recall of the gold mentions. Sentences (`--sentences`:
`search.SENTENCE_WORDS` x `search.SENTENCE_DENSE`, the weight for a query of that many words or
more): recall of the notes' gold codes with every sentence of a note queried and fused, beside
the mentions, which the choice must not cost.

    python bench/dense_weights.py --db KB.duckdb --labels ../shared/labels/aci_icd10cm_medcoder_train_valid.csv
    python bench/dense_weights.py --db KB.duckdb --labels ... --sentences --words 4,5,6,7,9 --weights 1,1.5,2,2.5,3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.specs import load_dataset  # noqa: E402
from icd_graph import search  # noqa: E402
from icd_graph.kb import KnowledgeBase  # noqa: E402
from optimizers.retrieval import candidate_recall, kb_retrievers  # noqa: E402


def recalls(kb, records, sentences: bool) -> dict[str, dict[str, float]]:
    modes = {"mentions": ("mentions", False), **({"sentences": ("notes", True)} if sentences else {})}
    found = {}
    for name, (mode, split_sentences) in modes.items():
        report = candidate_recall(records, kb_retrievers(kb, ["all"]), mode=mode, ks=(1, 5, 10, 50), sentences=split_sentences)
        found[name] = {str(k): round(v, 3) for k, v in report.recalls[0].code.items()}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--weights", default="0,0.25,0.5,1,1.5,2,3,4,6")
    parser.add_argument("--sentences", action="store_true", help="Tune the sentence weight (and --words) instead.")
    parser.add_argument("--words", default="5", help="With --sentences: the SENTENCE_WORDS to try.")
    parser.add_argument("--splits", default="train,valid")
    args = parser.parse_args()
    aci = Path(os.environ["ACI_BENCH_DIR"])
    splits = {name: load_dataset(f"aci:{name}", aci_dir=aci, labels=args.labels).records for name in args.splits.split(",")}
    settings = [(int(words), float(weight)) for words in args.words.split(",") for weight in args.weights.split(",")]
    with KnowledgeBase(args.db) as kb:
        if not kb.has_dense():
            sys.exit(f"no dense vectors beside {args.db}: python cli.py icd build --dense --db {args.db}")
        for words, weight in settings:
            if args.sentences:
                search.SENTENCE_WORDS, search.SENTENCE_DENSE = words, weight
                row = {"words": words, "weight": weight}
            else:
                search.WEIGHTS[search.DENSE] = weight
                row = {"weight": weight}
            row.update({split: recalls(kb, records, args.sentences) for split, records in splits.items()})
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
