"""Review app save speed, run by hand: `python bench/review_bench.py --db KB.duckdb [--notes 100,1000]`.

Every decision rewrites --out whole (temporary file, fsync, rename, under a file lock), so the
time of a save grows with the notes already reviewed. For each size, the file is first filled
with that many reviewed notes (the ACI-BENCH train+valid notes, repeated under new ids, each
with four suggestions decided), then decisions are timed through ReviewStore, as the app makes
them. Prints a markdown table of the median milliseconds per decision and the file size. Needs
the `[review]` extra and ACI_BENCH_DIR.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.records import NoteRecord  # noqa: E402
from data.specs import load_dataset  # noqa: E402
from icd_graph.kb import KnowledgeBase  # noqa: E402
from review import model  # noqa: E402
from review.codes import CodeBook  # noqa: E402
from review.model import Span, Suggestion  # noqa: E402
from review.predictions import Predicted  # noqa: E402
from review.store import ReviewStore  # noqa: E402

DECISIONS = 40
CODES = ["I10", "E11.9", "E78.5", "J45.909"]


def filled_store(texts: list[str], size: int, codes: CodeBook, folder: Path) -> ReviewStore:
    records = [NoteRecord(f"n{i}", texts[i % len(texts)], ()) for i in range(size)]
    suggestions = tuple(Suggestion(code, spans=(Span(0, 10),)) for code in CODES)
    predicted = {r.id: Predicted("bench", suggestions) for r in records}
    store = ReviewStore(records, predicted, folder / f"reviewed-{size}.jsonl", codes, "bench")
    notes = {}
    for record in records:
        note = store.note(store.position[record.id])
        for i in range(len(CODES)):
            note = model.decide(note, i, model.ACCEPTED, seen="pending", who="bench", when="t")
        notes[record.id] = model.mark_done(note, True, who="bench", when="t")
    store._notes = notes  # fill once, then write through the store as the app does
    with store._locked():
        store._write()
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--notes", default="100,1000")
    args = parser.parse_args()
    texts = [r.text for r in load_dataset("aci:dev", aci_dir=Path(os.environ["ACI_BENCH_DIR"])).records]
    print("| notes in the file | file size | save a decision (median ms) |\n|---|---|---|")
    with KnowledgeBase(args.db) as kb, tempfile.TemporaryDirectory() as folder:
        for size in map(int, args.notes.split(",")):
            store = filled_store(texts, size, CodeBook(kb), Path(folder))
            times = []
            for i in range(DECISIONS):
                n, seen = i % size, model.ACCEPTED if i // size % 2 == 0 else model.PENDING
                started = time.perf_counter()
                store.decide(n, 0, model.PENDING if seen == model.ACCEPTED else model.ACCEPTED, seen=seen)
                times.append((time.perf_counter() - started) * 1000)
            megabytes = store.out.stat().st_size / 1e6
            print(f"| {size:,} | {megabytes:.1f} MB | {statistics.median(times):.1f} |")


if __name__ == "__main__":
    main()
