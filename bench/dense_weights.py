"""Tune the weight of the dense list in the fused search (`search.WEIGHTS['dense']`) on ACI-BENCH
train mentions; other splits are printed for the record, never used to choose.

    python bench/dense_weights.py --db KB.duckdb --labels ../shared/labels/aci_icd10cm_medcoder_train_valid.csv
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--weights", default="0,0.25,0.5,1,1.5,2,3,4,6")
    parser.add_argument("--splits", default="train,valid")
    args = parser.parse_args()
    aci = Path(os.environ["ACI_BENCH_DIR"])
    splits = {name: load_dataset(f"aci:{name}", aci_dir=aci, labels=args.labels).records for name in args.splits.split(",")}
    rows = []
    with KnowledgeBase(args.db) as kb:
        if not kb.has_dense():
            sys.exit(f"no dense vectors beside {args.db}: python cli.py icd build --dense --db {args.db}")
        for weight in (float(w) for w in args.weights.split(",")):
            search.WEIGHTS[search.DENSE] = weight
            row = {"weight": weight}
            for split, records in splits.items():
                report = candidate_recall(records, kb_retrievers(kb, ["all"]), mode="mentions", ks=(1, 5, 10, 50))
                row[split] = {str(k): round(v, 3) for k, v in report.recalls[0].code.items()}
            rows.append(row)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
