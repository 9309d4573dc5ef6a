"""Compare embedding models for the dense retriever on ACI-BENCH mentions (train and dev).

Embedding the whole corpus (132k documents) with every candidate model takes too long on 2 shared
cores (the 4-bit e5 runs at about a quarter of MiniLM's speed), so each model embeds the same
sample: every document that names a gold code of the mentions, plus --sample others drawn at
random (seed 0). Both retrievers face the same documents, so the comparison is fair, but the
absolute recall is higher than over the full corpus. Reported: the dense retriever alone and
fused into `all`, recall@1/5/10/50 of the exact gold code.

    python bench/dense_models.py --db KB.duckdb --labels ../shared/labels/aci_icd10cm_medcoder_train_valid.csv
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.specs import load_dataset  # noqa: E402
from icd_graph.dense import build_vectors, corpus, dense_dir_for  # noqa: E402
from icd_graph.embed import load_embedder  # noqa: E402
from icd_graph.kb import KnowledgeBase  # noqa: E402
from optimizers.retrieval import candidate_recall, kb_retrievers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--labels", type=Path, required=True)
    parser.add_argument("--models", default="minilm,e5")
    parser.add_argument("--sample", type=int, default=20000)
    parser.add_argument("--splits", default="train,dev")
    args = parser.parse_args()
    aci = Path(os.environ["ACI_BENCH_DIR"])
    splits = {name: load_dataset(f"aci:{name}", aci_dir=aci, labels=args.labels).records for name in args.splits.split(",")}
    gold = {m.code for records in splits.values() for r in records for m in r.mentions}
    with duckdb.connect(str(args.db), read_only=True) as con:
        documents = corpus(con)
    positives = [d for d in documents if gold & set(d.codes)]
    others = [d for d in documents if not gold & set(d.codes)]
    sample = positives + random.Random(0).sample(others, min(args.sample, len(others)))
    print(f"{len(sample):,} documents ({len(positives):,} naming a gold code) of {len(documents):,}", file=sys.stderr)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            db = Path(tmp) / model / args.db.name
            db.parent.mkdir()
            shutil.copyfile(args.db, db)
            shutil.copytree(args.db.with_name(args.db.name + ".bm25"), db.with_name(db.name + ".bm25"))
            embedder = load_embedder(model)
            with duckdb.connect(str(db), read_only=True) as con:
                report = build_vectors(con, dense_dir_for(db), embedder, model, documents=sample)
            print(f"{model}: {report.documents:,} documents in {report.seconds:.0f} s", file=sys.stderr)
            with KnowledgeBase(db) as kb:
                started = time.perf_counter()
                queries = 0
                for split, records in splits.items():
                    recall = candidate_recall(records, kb_retrievers(kb, ["dense", "all"]), mode="mentions", ks=(1, 5, 10, 50))
                    queries += recall.queries
                    results[f"{model} {split}"] = {r.retriever: r.code for r in recall.recalls}
                per_query = (time.perf_counter() - started) / queries * 1000
            results[f"{model} seconds"] = {"embed": report.seconds, "per_document_ms": 1000 * report.seconds / report.documents, "per_query_ms": per_query}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
