"""Embedded local model speed, run by hand: `python bench/local_bench.py [--model PATH.gguf]`.

Times what a coding program does to the model: two stages whose prompts share a long prefix of
instructions and demos (about 2,000 tokens) and differ in a short note excerpt, called in turn
as a program calls them. Prints a markdown table of the median seconds per call with the engine's
prompt cache and without it, the memory the cached states hold, and the load time. Needs the
`[local]` extra.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from programs.local import LlamaEngine, default_model_path  # noqa: E402

ROUNDS = 4
STAGES = {
    "extract": " ".join(f"Demo {i}: the patient reports symptom {i}; assessment lists condition {i}." for i in range(110)),
    "rerank": " ".join(f"Candidate {i}: code X{i:02d}.{i % 10} means disorder number {i}." for i in range(110)),
}
NOTES = ["Chest pain on exertion.", "Cough for two weeks.", "Knee swelling after a fall.", "Itchy rash on both arms."]


def timed_calls(engine: LlamaEngine) -> list[float]:
    llama = engine.load()
    times = []
    for note in NOTES[:ROUNDS]:
        for prefix in STAGES.values():
            started = time.perf_counter()
            llama.create_chat_completion(
                messages=[{"role": "user", "content": f"{prefix}\n\nNote: {note}\nAnswer:"}], max_tokens=16, temperature=0.0
            )
            times.append(time.perf_counter() - started)
    return times[len(STAGES) :]


def cached_bytes(engine: LlamaEngine) -> int:
    """Memory the prompt cache's states hold: model state, token ids and logits rows."""
    states = engine.load().cache.states.cache_state.values()
    return sum(state.llama_state_size + state.input_ids.nbytes + state.scores.nbytes for state in states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF file (default: the bundled Gemma 3 270M)")
    args = parser.parse_args()
    path = args.model or default_model_path()
    rows = []
    for label, cache_bytes in (("with prompt cache", None), ("without prompt cache", 0)):
        engine = LlamaEngine(path) if cache_bytes is None else LlamaEngine(path, prompt_cache_bytes=cache_bytes)
        started = time.perf_counter()
        engine.load()
        load = time.perf_counter() - started
        times = timed_calls(engine)
        held = f"{cached_bytes(engine) / 2**20:.0f} MiB" if cache_bytes is None else "-"
        rows.append((label, str(len(times)), f"{statistics.median(times):.2f} s", held, f"{load:.1f} s"))
        engine.close()
    print("| engine | calls (after the first round) | median per call | cached states | load |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
