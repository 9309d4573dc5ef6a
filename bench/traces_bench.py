"""Cost of exporting program runs as chat data, run by hand:
`python bench/traces_bench.py [--db PATH] [--program clh] [--model scripted|none] [--notes 100]`.

Codes the first N ACI-BENCH notes (train, valid, then test1; $ACI_BENCH_DIR) twice with the
same program, with the scripted OpenAI-compatible server of the tests (the LM answers in
milliseconds and the same way each time, with DSPy's cache off) or with no LM (`none`, the
coding rules alone): once as a plain batch
(`programs.batch.run_batch`), once recorded (`programs.traces.write_traces`). The difference is
the export's own cost: the DSPy callback, the recording knowledge base, the chat records and
their JSONL lines. Target: under 10 s for 100 notes. Also times `--from-gold` on aci:train+dev
with each label set ($LABELS_DIR, default ../shared/labels).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

from data.specs import load_dataset  # noqa: E402
from icd_graph.kb import KnowledgeBase  # noqa: E402
from icd_graph.paths import default_db_path  # noqa: E402
from programs.batch import run_batch  # noqa: E402
from programs.gold_trajectories import write_gold  # noqa: E402
from programs.lm import make_lm  # noqa: E402
from programs.registry import build_program  # noqa: E402
from programs.traces import write_traces  # noqa: E402
from tests.programs.scripted_server import ScriptedServer  # noqa: E402

LABELS = {"medcoder": "aci_icd10cm_medcoder_train_valid.csv", "yuan2025": "aci_icd10cm_yuan2025_train_valid.csv"}


def timed(run) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result): on a shared machine the CPU time is
    the steadier measure of the work done."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--program", default="clh", choices=["medcoder", "clh", "verify"])
    parser.add_argument("--model", default="scripted", choices=["scripted", "none"])
    parser.add_argument("--notes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="alternate plain and recorded runs; the fastest of each counts")
    args = parser.parse_args()
    aci = Path(os.environ.get("ACI_BENCH_DIR", ROOT.parent / "shared" / "aci-bench" / "challenge_data"))
    labels = Path(os.environ.get("LABELS_DIR", ROOT.parent / "shared" / "labels"))
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    records = load_dataset("aci:train+valid+test1", aci_dir=aci).records[: args.notes]
    with KnowledgeBase(args.db or default_db_path()) as kb, ScriptedServer() as server, \
            tempfile.TemporaryDirectory() as folder:
        lm = make_lm("hosted_vllm/scripted", server.url, cache=False, num_retries=0) if args.model == "scripted" else None
        program = build_program(args.program, kb)
        run_batch(program, records[:2], Path(folder) / "warm.jsonl", lm)  # first use: indexes, graph, litellm
        plain, recorded = [], []
        for round_ in range(args.rounds):
            *seconds, _ = timed(lambda: run_batch(program, records, Path(folder) / f"plain{round_}.jsonl", lm))
            plain.append(seconds)
            out = Path(folder) / f"traces{round_}.jsonl"
            *seconds, summary = timed(lambda: write_traces(program, records, out, lm, {"source": "program"}))
            recorded.append(seconds)
        wall_plain, cpu_plain = (min(run[i] for run in plain) for i in (0, 1))
        wall_recorded, cpu_recorded = (min(run[i] for run in recorded) for i in (0, 1))
        size = out.stat().st_size / 1e6
        print(f"| {args.program} ({args.model}), {len(records)} notes | plain run {wall_plain:.1f} s ({cpu_plain:.1f} s CPU) "
              f"| recorded {wall_recorded:.1f} s ({cpu_recorded:.1f} s CPU) | export cost {wall_recorded - wall_plain:.1f} s "
              f"({cpu_recorded - cpu_plain:.1f} s CPU; target < 10 s) | {summary.written} records, {size:.1f} MB |")
        for name, file_name in LABELS.items():
            dataset = load_dataset("aci:train+dev", aci_dir=aci, labels=labels / file_name, validator=kb)
            seconds, _, gold = timed(lambda: write_gold(dataset.records, kb, Path(folder) / f"gold-{name}.jsonl", {"source": "gold"}))
            print(f"| --from-gold, {name} labels | {gold.notes} notes | {seconds:.1f} s | "
                  f"{gold.settled} of {gold.in_release} gold codes ({gold.coverage:.1%}) |")


if __name__ == "__main__":
    main()
