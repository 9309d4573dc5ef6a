"""Knowledge-base performance, run by hand: `python bench/icd_bench.py [--db PATH] [--build] [--build-dense]`.

Prints a markdown table of medians: get, expand, notes, validate, search (per source; `dense`
and `all` with dense when the file has dense vectors, each query embedded anew) and index
navigation per call in-process, the CLI cold start of `icd show`, with --build the build time
into a temporary folder, and with --build-dense the wall time, CPU time and peak memory of
`icd build --dense` run as its own process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from icd_graph.dense import DenseIndex  # noqa: E402
from icd_graph.kb import EXPANSIONS, KnowledgeBase  # noqa: E402
from icd_graph.paths import default_db_path  # noqa: E402

CODES = ["E11.9", "I10", "S72.001A", "J45.909", "E11.311", "M25.561", "F32.A", "N18.30", "E78.5", "Z79.4"]
QUERIES = [
    "type 2 diabetes with retinopathy", "essential hypertension", "fracture of neck of right femur",
    "asthma exacerbation", "right knee pain", "major depressive disorder", "chronic kidney disease stage 3",
    "hyperlipidemia", "long term use of insulin", "acute otitis media", "urinary tract infection",
    "community acquired pneumonia", "atrial fibrillation", "obesity", "migraine without aura",
    "gastroesophageal reflux", "low back pain", "hypothyroidism", "anxiety disorder", "chest pain",
]


def median_ms(calls, repeat: int = 1) -> float:
    times = []
    for call in calls * repeat:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def uncached(search, text: str, **options):
    """A search whose query is embedded anew (the dense index caches query vectors)."""
    DenseIndex._query.cache_clear()
    return search(text, **options)


def build_dense() -> tuple[str, str, str, str]:
    """`icd build --dense` into a temporary folder as a child process: wall, CPU, peak RSS."""
    with tempfile.TemporaryDirectory() as folder:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "cli.py", "icd", "build", "--dense", "--db", str(Path(folder) / "kb.duckdb"), "--json"],
                                cwd=ROOT, check=True, capture_output=True, text=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    documents = json.loads(result.stdout)["dense"]["documents"]
    return (f"build --dense ({documents:,} documents embedded)", "1",
            f"{wall / 60:.1f} min wall, {cpu / 60:.1f} min CPU, {after.ru_maxrss / 1024:.0f} MB peak", "< 10 min, < 2 GB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--build", action="store_true", help="also time a full build")
    parser.add_argument("--build-dense", action="store_true", help="also time a full build with dense vectors")
    args = parser.parse_args()
    db = args.db or default_db_path()
    rows = []
    if args.build:
        from icd_graph.build import build

        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            build(source=Path(os.environ["ICD10CM_SOURCE"]) if os.environ.get("ICD10CM_SOURCE") else None,
                  db=Path(folder) / "kb.duckdb")
            rows.append(("build (s)", "1", f"{time.perf_counter() - started:.1f} s", "-"))
    if args.build_dense:
        rows.append(build_dense())
    with KnowledgeBase(db) as kb:
        started = time.perf_counter()
        kb.expand("E11.9", "neighbors2")
        kb.search("warm up", k=1)
        kb.index_lookup(["Diabetes"])
        rows.append(("first use: load hierarchy, graph, search, index tree", "1",
                     f"{(time.perf_counter() - started) * 1000:.0f} ms", "-"))
        rows.append(("get / require", str(len(CODES) * 10), f"{median_ms([lambda c=c: kb.require(c) for c in CODES], 10):.3f} ms", "< 1 ms"))
        rows.append(("notes (inherited)", str(len(CODES) * 10), f"{median_ms([lambda c=c: kb.notes(c) for c in CODES], 10):.3f} ms", "-"))
        expand_calls = [lambda c=c, k=k: kb.expand(c, k) for c in CODES for k in EXPANSIONS]
        rows.append(("expand (all kinds)", str(len(expand_calls)), f"{median_ms(expand_calls):.3f} ms", "< 5 ms"))
        rows.append(("validate", str(len(CODES) * 10), f"{median_ms([lambda c=c: kb.validate(c[:3]) for c in CODES], 10):.3f} ms", "-"))
        dense = kb.has_dense()
        for source in ("tabular", "index", "dense", "all") if dense else ("tabular", "index", "all"):
            calls = [lambda q=q, s=source: uncached(kb.search, q, k=20, source=s) for q in QUERIES]
            target = "< 30 ms" if dense and source in ("dense", "all") else "< 20 ms"
            rows.append((f"search k=20 source={source}", str(len(QUERIES) * 5), f"{median_ms(calls, 5):.2f} ms", target))
        calls = [lambda q=q: kb.index_lookup(q.split()) for q in QUERIES]
        rows.append(("index_lookup", str(len(QUERIES)), f"{median_ms(calls):.2f} ms", "-"))
    env = {**os.environ, "ICD_DB": str(db)}
    cold = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "cli.py", "icd", "show", "E11.9", "--json"], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        cold.append(time.perf_counter() - started)
    rows.append(("CLI cold start `icd show E11.9`", "5", f"{statistics.median(cold):.2f} s", "< 1.5 s"))
    print("| operation | calls | median | target |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
