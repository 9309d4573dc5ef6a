"""Mutation check, run by hand: plant one small bug at a time in a fixed list of functions and
run the tests that cover them; a bug no test notices is a surviving mutant.

    python tools/mutants.py                      # every target
    python tools/mutants.py --only metrics --only bootstrap
    python tools/mutants.py --list               # the mutants, nothing run
    python tools/mutants.py --json

The bugs are operator swaps (< and <=, == and !=, in and not in, + and -, * and /, and / or),
a dropped `not`, constants moved by one (0 -> 1, 1 -> 0, n -> n + 1, True / False), min / max
and any / all swapped, a condition negated, break / continue swapped, an `except` widened to
`Exception`, a call statement deleted; plus the named bugs of PLANTED (those of issue 18).
Each mutant runs on a copy of the repository (the checkout is never touched) against a
knowledge base built once by this checkout (passed to the tests as ICD_TEST_KB), the target's
tests only, stopping at the first failure. A mutant that survives but cannot change a result
(it only changes durability or speed, say) is listed in EQUIVALENT with the reason.
Exit status 1 when a mutant survives that EQUIVALENT does not explain.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    """Functions (qualified names) of one file and the tests that must notice their bugs."""

    name: str
    path: str
    functions: tuple[str, ...]
    tests: tuple[str, ...]


TARGETS = (
    Target("metrics", "optimizers/metrics.py",
           ("Counts.__add__", "Counts.precision", "Counts.recall", "Counts.f1", "NoteScore.exact", "counts", "code_f1",
            "span_tokens", "evidence_counts", "score_note", "micro", "macro", "aggregate"),
           ("tests/optimizers/test_metrics.py",)),
    Target("bootstrap", "optimizers/metrics.py", ("Difference.significant", "paired_bootstrap"),
           ("tests/optimizers/test_metrics.py",)),
    Target("spans", "programs/spans.py", ("locate", "_normalized_find", "_aligned", "_best_sentence"),
           ("tests/programs/test_spans.py",)),
    Target("code repair", "programs/guarantees.py",
           ("repair_code", "best_billable", "asserted_words", "reconcile", "_unspecific", "_excludes1"),
           ("tests/programs/test_guarantees.py",)),
    Target("expansions", "icd_graph/kb.py", ("KnowledgeBase.expand", "KnowledgeBase.complete", "_Hierarchy.expand"),
           ("tests/icd_graph/test_kb.py",)),
    Target("graph", "icd_graph/graph.py", ("neighbours",), ("tests/icd_graph/test_graph.py", "tests/icd_graph/test_kb.py")),
    Target("floor rules", "programs/floor.py",
           ("keep_problem", "problem_query", "words", "quality", "defining", "naming", "vetted", "unsaid", "best_entry", "choose"),
           ("tests/programs/test_floor.py",)),
    Target("batch writer", "programs/batch.py", ("code_note", "code_record", "run_batch"),
           ("tests/programs/test_batch.py", "tests/programs/test_concurrency.py")),
    Target("predictions file", "programs/predictions.py", ("BatchSummary.record", "BatchSummary.finish", "BatchSummary.add_usage",
            "finished_ids", "to_code", "Appender.write", "code_batch"),
           ("tests/programs/test_predictions.py", "tests/programs/test_batch.py", "tests/programs/test_concurrency.py")),
)


@dataclass(frozen=True)
class Planted:
    """A named bug: `old` (which must occur once in the target's file) becomes `new`."""

    target: str
    name: str
    old: str
    new: str


PLANTED = (
    Planted("bootstrap", "the two systems resampled independently",
            "sample = [pairs[rng.randrange(len(pairs))] for _ in pairs]\n"
            "        deltas.append(sum((p[1] for p in sample), Counts()).f1 - sum((p[0] for p in sample), Counts()).f1)",
            "sample = [pairs[rng.randrange(len(pairs))] for _ in pairs]\n"
            "        other = [pairs[rng.randrange(len(pairs))] for _ in pairs]\n"
            "        deltas.append(sum((p[1] for p in sample), Counts()).f1 - sum((p[0] for p in other), Counts()).f1)"),
    Planted("bootstrap", "min and max instead of the percentiles",
            "low=deltas[int(tail * (resamples - 1))],\n        high=deltas[int(round((1 - tail) * (resamples - 1)))],",
            "low=deltas[0],\n        high=deltas[-1],"),
    Planted("metrics", "macro F1 as the harmonic mean of macro P and R",
            "sum(c.f1 for c in values) / len(per_code),",
            "2 * sum(c.precision for c in values) * sum(c.recall for c in values) / len(per_code)"
            " / max(sum(c.precision for c in values) + sum(c.recall for c in values), 1e-12),"),
    Planted("expansions", "cousins from the first uncle only",
            "return sorted(j for u in uncles for j in self.children.get(u, ()))",
            "return sorted(j for u in uncles[:1] for j in self.children.get(u, ()))"),
    Planted("batch writer", "every error taken for a note error",
            "except NoteError as exc:\n        return Outcome(record_id, failed",
            "except Exception as exc:\n        return Outcome(record_id, failed"),
    Planted("code repair", "the first completion in code order (E11.311 for 'diabetic retinopathy')",
            "return min(kb.complete(code), key=rank)", "return min(kb.complete(code))"),
)

# Surviving mutants that cannot change a result, keyed by target and mutant description.
AHEAD = ("notes handed out beyond the threads wait in the pool's queue, and a stop cancels them: how many wait "
         "changes nothing a run writes")
FIRST_NODE = "node 0 is the first chapter, whose own parent is -1: its children's grandparent is -1 either way"
PERCENTILE = "another nearest-rank convention: the percentile moves by one of 1,000 or more sorted resamples"
EQUIVALENT: dict[tuple[str, str], str] = {
    ("bootstrap", "paired_bootstrap (line +26): `resamples - 1` -> `resamples + 1`"): PERCENTILE,
    ("bootstrap", "paired_bootstrap (line +26): `1` -> `0`"): PERCENTILE,
    ("bootstrap", "paired_bootstrap (line +27): `resamples - 1` -> `resamples + 1`"): PERCENTILE,
    ("bootstrap", "paired_bootstrap (line +27): `1` -> `0`"): PERCENTILE + " ('1 - tail' -> '0 - tail' counts from the end)",
    ("bootstrap", "paired_bootstrap (line +27): `1` -> `0` (#2)"): PERCENTILE,
    ("spans", "_aligned (line +5): `len(wanted) < MIN_ALIGN_CHARS` -> `len(wanted) <= MIN_ALIGN_CHARS`"):
        "an 8-character quote scores 88 only where it matches the note exactly, which the normalized search found first",
    ("expansions", "_Hierarchy.expand (line +17): `parent >= 0` -> `parent > 0`"): FIRST_NODE,
    ("expansions", "_Hierarchy.expand (line +17): `0` -> `1`"): FIRST_NODE,
    ("floor rules", "choose (line +13): `2` -> `3`"): "ranks are unique, so a third item never breaks a tie",
    ("batch writer", "run_batch (line +23): delete `budget.close()`"):
        "the stage helpers also end when the budget is collected (ThreadPoolExecutor's workers hold it weakly); "
        "close() only ends them at once",
    ("batch writer", "run_batch (line +21): `2` -> `3`"): AHEAD,
    ("batch writer", "code_record (line +9): `False` -> `True`"):
        "ensure_ascii only escapes non-ASCII characters: every JSON reader reads the same line",
    ("predictions file", "finished_ids (line +13): `except (ValueError, KeyError, TypeError):` -> `except Exception:`"):
        "json.loads(line)['id'] raises nothing else",
    ("predictions file", "Appender.write (line +6): delete `os.fsync(self._handle.fileno())`"):
        "durability against a machine crash (a reader already sees the flushed line); no test can crash the machine",
}


@dataclass(frozen=True)
class Mutant:
    target: Target
    description: str
    source: str


# -- generating mutants ------------------------------------------------------------------------

SWAPS: dict[type, type] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq, ast.NotEq: ast.Eq,
    ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv, ast.BitOr: ast.BitAnd, ast.BitAnd: ast.BitOr, ast.And: ast.Or, ast.Or: ast.And,
}
NAME_SWAPS = {"min": "max", "max": "min", "any": "all", "all": "any"}
Edit = Callable[[ast.AST], ast.AST | None]


def edits(node: ast.AST, parent: ast.AST | None) -> Iterator[Edit]:
    """The mutations of one node: functions that change the node (a copy) in place, or return
    the node to put in its place."""
    if isinstance(node, ast.Compare):
        for i, op in enumerate(node.ops):
            if type(op) in SWAPS:
                yield lambda n, i=i: n.ops.__setitem__(i, SWAPS[type(n.ops[i])]())
    if isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAPS:
        yield lambda n: setattr(n, "op", SWAPS[type(n.op)]())
    if isinstance(node, ast.BoolOp):
        yield lambda n: setattr(n, "op", SWAPS[type(n.op)]())
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        yield lambda n: n.operand
    if isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
        if isinstance(node.value, bool):
            yield lambda n: setattr(n, "value", not n.value)
        else:
            yield lambda n: setattr(n, "value", 1 if n.value == 0 else 0 if n.value == 1 else n.value + 1)
    if isinstance(node, ast.Name) and node.id in NAME_SWAPS and isinstance(parent, ast.Call) and parent.func is node:
        yield lambda n: setattr(n, "id", NAME_SWAPS[n.id])
    if isinstance(node, (ast.If, ast.While, ast.IfExp)) and not isinstance(node.test, (ast.Compare, ast.UnaryOp, ast.BoolOp)):
        yield lambda n: setattr(n, "test", ast.UnaryOp(ast.Not(), n.test))
    if isinstance(node, ast.Break):
        yield lambda n: ast.Continue()
    if isinstance(node, ast.Continue):
        yield lambda n: ast.Break()
    if isinstance(node, ast.ExceptHandler) and node.type is not None and ast.unparse(node.type) not in ("Exception", "BaseException"):
        yield lambda n: setattr(n, "type", ast.Name("Exception"))
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        yield lambda n: ast.Pass()


def walk(function: ast.FunctionDef) -> Iterator[tuple[ast.AST, ast.AST | None]]:
    """Every node of the function's body (not its signature, nor annotations) with its parent,
    in a fixed order."""
    stack = [(statement, function) for statement in function.body]
    while stack:
        node, parent = stack.pop(0)
        yield node, parent
        children = [child for child in ast.iter_child_nodes(node) if not (isinstance(node, ast.AnnAssign) and child is node.annotation)]
        stack.extend((child, node) for child in children)


def find_function(module: ast.Module, qualname: str) -> ast.FunctionDef:
    scope: ast.AST = module
    for part in qualname.split("."):
        scope = next((
            node for node in ast.iter_child_nodes(scope)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == part
        ), None)
        if scope is None:
            raise SystemExit(f"error: no function {qualname}; update TARGETS")
    return scope


def replace(tree: ast.AST, target: ast.AST, new: ast.AST) -> None:
    for node in ast.walk(tree):
        for field, value in ast.iter_fields(node):
            if value is target:
                setattr(node, field, new)
            elif isinstance(value, list) and any(item is target for item in value):
                value[[id(item) for item in value].index(id(target))] = new


def function_mutants(target: Target, source: str, qualname: str) -> Iterator[Mutant]:
    module = ast.parse(source)
    function = find_function(module, qualname)
    first = min([function.lineno] + [d.lineno for d in function.decorator_list])
    lines = source.splitlines(keepends=True)
    indent = lines[first - 1][: len(lines[first - 1]) - len(lines[first - 1].lstrip())]
    sites = [(i, edit) for i, (node, parent) in enumerate(walk(function)) for edit in edits(node, parent)]
    seen: dict[str, int] = {}
    for i, edit in sites:
        mutated = copy.deepcopy(function)
        node = next(n for j, (n, _) in enumerate(walk(mutated)) if j == i)
        before = ast.unparse(node).splitlines()[0]
        where = f"{qualname} (line +{node.lineno - function.lineno})"
        clone = copy.deepcopy(node)
        result = edit(clone)
        new = result if isinstance(result, ast.AST) else clone
        replace(mutated, node, new)
        ast.fix_missing_locations(mutated)
        after = ast.unparse(new).splitlines()[0] if not isinstance(new, ast.Pass) else ""
        description = f"{where}: delete `{before}`" if not after else f"{where}: `{before}` -> `{after}`"
        seen[description] = seen.get(description, 0) + 1
        if seen[description] > 1:
            description += f" (#{seen[description]})"
        body = textwrap.indent(ast.unparse(mutated), indent) + "\n"
        yield Mutant(target, description, "".join(lines[: first - 1]) + body + "".join(lines[function.end_lineno :]))


def mutants(targets: list[Target]) -> list[Mutant]:
    found = []
    for target in targets:
        source = (REPO / target.path).read_text(encoding="utf-8")
        for qualname in target.functions:
            found.extend(function_mutants(target, source, qualname))
        for planted in PLANTED:
            if planted.target == target.name:
                if source.count(planted.old) != 1:
                    raise SystemExit(f"error: planted mutant {planted.name!r} no longer matches {target.path}; update PLANTED")
                found.append(Mutant(target, f"planted: {planted.name}", source.replace(planted.old, planted.new)))
    return found


# -- running them ------------------------------------------------------------------------------

def run_tests(copy_root: Path, target: Target, env: dict[str, str], timeout: float) -> tuple[str, str]:
    """('passed', 'failed' or 'timeout', pytest's last lines) for the target's tests in the copy."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *target.tests]
    try:
        done = subprocess.run(command, cwd=copy_root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    return ("passed" if done.returncode == 0 else "failed"), "\n".join(done.stdout.splitlines()[-15:])


def copy_repository(destination: Path) -> Path:
    root = destination / "repo"
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache"))
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", choices=[t.name for t in TARGETS], help="Targets to check (repeatable).")
    parser.add_argument("--list", action="store_true", help="List the mutants and exit.")
    parser.add_argument("--json", action="store_true", help="Machine-readable report.")
    args = parser.parse_args()
    targets = [t for t in TARGETS if not args.only or t.name in args.only]
    planned = mutants(targets)
    if args.list:
        for mutant in planned:
            print(f"{mutant.target.name}: {mutant.description}")
        print(f"{len(planned)} mutants")
        return 0

    with tempfile.TemporaryDirectory(prefix="icd-mutants-") as scratch:
        scratch = Path(scratch)
        root = copy_repository(scratch)
        kb = scratch / "kb.duckdb"
        shared = REPO.parent / "shared"  # the data the tests read, as tests/conftest.py finds it
        data = {"ICD10CM_SOURCE": shared / "icd10cm", "ACI_BENCH_DIR": shared / "aci-bench" / "challenge_data",
                "MDACE_DIR": shared / "mdace", "LABELS_DIR": shared / "labels"}
        env = {**{name: str(path) for name, path in data.items()}, **os.environ,
               "ICD_TEST_KB": str(kb), "DSPY_CACHEDIR": str(scratch / "dspy"), "PYTHONDONTWRITEBYTECODE": "1"}
        log(f"building the knowledge base once: {kb}", args.json)
        subprocess.run([sys.executable, "cli.py", "icd", "build", "--no-dense", "--source", env["ICD10CM_SOURCE"], "--db", str(kb)],
                       cwd=root, env=env, check=True, capture_output=True)
        timeouts = {}
        for target in targets:
            start = time.perf_counter()
            outcome, output = run_tests(root, target, env, 1800)
            if outcome != "passed":
                raise SystemExit(f"{output}\nerror: the tests of {target.name} fail without a mutant: {' '.join(target.tests)}")
            timeouts[target.name] = 60 + 5 * (time.perf_counter() - start)
        results = []
        for n, mutant in enumerate(planned, 1):
            path = root / mutant.target.path
            original = path.read_text(encoding="utf-8")
            path.write_text(mutant.source, encoding="utf-8")
            try:
                outcome, _ = run_tests(root, mutant.target, env, timeouts[mutant.target.name])
            finally:
                path.write_text(original, encoding="utf-8")
            status = {"failed": "killed", "timeout": "timeout", "passed": "survived"}[outcome]
            reason = EQUIVALENT.get((mutant.target.name, mutant.description))
            if status == "survived" and reason:
                status = "equivalent"
            results.append({"target": mutant.target.name, "mutant": mutant.description, "status": status, "reason": reason})
            log(f"[{n}/{len(planned)}] {status:10} {mutant.target.name}: {mutant.description}", args.json)
    report(results, targets, args.json)
    return 1 if any(r["status"] == "survived" for r in results) else 0


def log(line: str, quiet: bool) -> None:
    print(line, file=sys.stderr if quiet else sys.stdout, flush=True)


def report(results: list[dict], targets: list[Target], as_json: bool) -> None:
    summary = {
        target.name: {status: sum(r["target"] == target.name and r["status"] == status for r in results)
                      for status in ("killed", "timeout", "equivalent", "survived")}
        for target in targets
    }
    if as_json:
        print(json.dumps({"targets": summary, "mutants": results}, indent=2))
        return
    print(f"\n{'target':14} {'mutants':>8} {'killed':>7} {'timeout':>8} {'equivalent':>11} {'survived':>9}")
    for name, counts in summary.items():
        print(f"{name:14} {sum(counts.values()):8} {counts['killed']:7} {counts['timeout']:8} {counts['equivalent']:11} {counts['survived']:9}")
    for r in results:
        if r["status"] == "survived":
            print(f"SURVIVED {r['target']}: {r['mutant']}")


if __name__ == "__main__":
    sys.exit(main())
