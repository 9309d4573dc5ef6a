"""Constrained decoding speed, run by hand: `python bench/constrained_bench.py --db KB [--note FILE] [--threads N]`.

1. The billable-code grammar: built from a freshly opened knowledge base (the codes read, the
   automaton, the GBNF text), then served from its cache; its size; llama.cpp parsing it.
2. The embedded model: the calls the shipped compiled programs (MedCoder, verify) make on a note
   are recorded, then replayed in order on a fresh model under their grammars, twice: with
   `GrammarGreedy` (the model's token checked first; the time spent in the grammar measured
   inside it: parsing the grammar, checking each token, filtering the whole vocabulary when the
   grammar refuses the model's token), and with llama-cpp-python's own grammar sampler (the
   whole vocabulary filtered at every token). The overhead of constrained decoding is the
   grammar's time over the rest of the call (what the call costs without a grammar).
Prints markdown tables. Needs the `[local]` extra.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dspy  # noqa: E402

from icd_graph.kb import KnowledgeBase  # noqa: E402
from programs.batch import code_note  # noqa: E402
from programs.decoding import answer_schema_of  # noqa: E402
from programs.gbnf import to_gbnf  # noqa: E402
from programs.local import N_CTX, LlamaEngine, chat_messages, default_model_path, generation_threads  # noqa: E402
from programs.registry import COMPILED_DIR, load_program  # noqa: E402

BUILDS = 5
PROGRAMS = ("local.json", "local-verify.json")


def grammar_rows(db: Path) -> list[tuple[str, str]]:
    import llama_cpp

    builds = []
    for _ in range(BUILDS):
        with KnowledgeBase(db) as kb:
            started = time.perf_counter()
            grammar = kb.code_grammar()
            builds.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert kb.code_grammar() is grammar
            cached = time.perf_counter() - started
    vocab_model = llama_cpp.Llama(model_path=str(default_model_path()), vocab_only=True, verbose=False)
    started = time.perf_counter()
    sampler = llama_cpp.llama_sampler_init_grammar(vocab_model._model.vocab, grammar.gbnf().encode(), b"root")
    parsed = time.perf_counter() - started
    llama_cpp.llama_sampler_free(sampler)
    return [
        ("codes", f"{grammar.codes:,}"),
        ("rules / grammar text", f"{len(grammar.rules.splitlines()):,} / {len(grammar.rules) / 1024:.0f} kB"),
        (f"build, fresh knowledge base (median of {BUILDS})", f"{statistics.median(builds):.2f} s"),
        ("cached", f"{cached * 1e6:.0f} us"),
        ("llama.cpp parses it (every constrained call with a code field)", f"{parsed * 1e3:.0f} ms"),
    ]


class Recorder:
    """An engine that records each request before the real one answers it."""

    decodes_answer_schemas = supports_response_schema = True
    supported_params = LlamaEngine.supported_params

    def __init__(self, engine: LlamaEngine):
        self.engine = engine
        self.requests = []

    def complete(self, request):
        self.requests.append(request)
        return self.engine.complete(request)


def recorded_calls(db: Path, note: str, threads: int) -> list:
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    recorder = Recorder(LlamaEngine(default_model_path(), n_threads=threads))
    lm = dspy.LM(f"local/{default_model_path().name}", engine=recorder, temperature=0.0, max_tokens=512)
    with KnowledgeBase(db) as kb:
        for name in PROGRAMS:
            code_note(load_program(COMPILED_DIR / name, kb), note, lm)
    return [request for request in recorder.requests if answer_schema_of(request.config.response_format)]


def replay(calls: list, stock: bool, threads: int) -> list[tuple[float, float, int, str]]:
    """(seconds, seconds in the grammar, tokens, text) per call, on a fresh model."""
    import llama_cpp
    from llama_cpp import LlamaGrammar

    from programs.guided import GrammarGreedy, GuidedLlama

    class Timed(GrammarGreedy):
        def __init__(self, *args):
            started = time.perf_counter()
            self.seconds = 0.0
            super().__init__(*args)
            self.seconds += time.perf_counter() - started

        def _apply(self, *args):
            started = time.perf_counter()
            super()._apply(*args)
            self.seconds += time.perf_counter() - started

        def _accept(self, *args):
            started = time.perf_counter()
            super()._accept(*args)
            self.seconds += time.perf_counter() - started

    kind = llama_cpp.Llama if stock else type("TimedLlama", (GuidedLlama,), {"sampler_class": Timed})
    llama = kind(model_path=str(default_model_path()), n_ctx=N_CTX, n_threads=threads, chat_format="gemma",
                 verbose=False)
    llama.set_cache(llama_cpp.LlamaRAMCache(capacity_bytes=512 << 20))
    rows = []
    for request in calls:
        grammar = LlamaGrammar.from_string(to_gbnf(answer_schema_of(request.config.response_format)), verbose=False)
        started = time.perf_counter()
        out = llama.create_chat_completion(messages=chat_messages(request), temperature=0.0,
                                           max_tokens=request.config.max_tokens, grammar=grammar)
        seconds = time.perf_counter() - started
        inside = 0.0 if stock else llama.guided.seconds
        rows.append((seconds, inside, out["usage"]["completion_tokens"], out["choices"][0]["message"]["content"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="knowledge-base file")
    parser.add_argument("--note", type=Path, default=ROOT / "data" / "examples" / "knee_injury.txt")
    parser.add_argument("--threads", type=int, default=generation_threads(),
                        help="generation threads (1 on a machine whose cores are busy: the grammar runs on one)")
    args = parser.parse_args()
    print("| billable-code grammar | |\n|---|---|")
    for name, value in grammar_rows(args.db):
        print(f"| {name} | {value} |")
    calls = recorded_calls(args.db, args.note.read_text(encoding="utf-8"), args.threads)
    ours, stock = replay(calls, stock=False, threads=args.threads), replay(calls, stock=True, threads=args.threads)
    same = sum(a[3] == b[3] for a, b in zip(ours, stock))
    rest = [seconds - inside for seconds, inside, _, _ in ours]
    print(f"\n{len(calls)} calls of compiled MedCoder and verify on {args.note.name} ({args.threads} threads), "
          f"{sum(r[2] for r in ours):,} tokens "
          f"generated; the same answers from both samplers: {same} of {len(calls)}\n")
    print("| sampler | s per call (median) | total s | grammar s | overhead |\n|---|---|---|---|---|")
    total_rest = sum(rest)
    grammar_ours = sum(r[1] for r in ours)
    print(f"| model's token checked first (GrammarGreedy) | {statistics.median(r[0] for r in ours):.2f} | "
          f"{sum(r[0] for r in ours):.1f} | {grammar_ours:.1f} | {grammar_ours / total_rest:.0%} |")
    stock_total = sum(r[0] for r in stock)
    print(f"| llama-cpp-python's (whole vocabulary, every token) | {statistics.median(r[0] for r in stock):.2f} | "
          f"{stock_total:.1f} | {stock_total - total_rest:.1f} | {(stock_total - total_rest) / total_rest:.0%} |")
    per_call = sorted(inside / max(seconds - inside, 1e-9) for seconds, inside, _, _ in ours)
    print(f"\nper-call overhead (GrammarGreedy): median {statistics.median(per_call):.0%}, worst {per_call[-1]:.0%}")


if __name__ == "__main__":
    main()
