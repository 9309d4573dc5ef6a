"""Compile the toy two-stage program with each optimizer against a scripted LM whose answers
are right only with demos or the right instruction; save, load and refuse compiled files."""

from __future__ import annotations

import json

import dspy
import pytest
from tests.optimizers.scripted import DEV, KEYWORD, TRAIN, Toy, make_examples, scripted_lm

from optimizers.compile import (
    CompileFailed,
    CompiledFileError,
    apply_compiled,
    load_compiled,
    run_metadata,
    run_optimizer,
    save_compiled,
)
from optimizers.registry import Bootstrap, Settings, get_optimizer

HARD_TRAIN = make_examples(["diabetes with retinopathy", "essential hypertension", "asthma exacerbation"], easy=False)
SETTINGS = Settings(max_demos=2, candidates=2)


@pytest.fixture(autouse=True)
def lm():
    lm = scripted_lm()
    with dspy.context(lm=lm):
        yield lm


def instructions(program: dspy.Module) -> str:
    return program.assign.signature.instructions


@pytest.mark.parametrize("name", ["bootstrap", "random-search", "mipro"])
def test_demo_optimizers_raise_dev_f1(name, lm):
    run = run_optimizer(Toy(), TRAIN, DEV, get_optimizer(name), SETTINGS, proposer=lm)
    assert run.status == "complete"
    assert run.before.micro_f1 == 0.0
    assert run.after.micro_f1 == 1.0
    assert run.lm_calls > 0


def test_only_right_demos_raise_dev_f1(lm):
    def scored(demos):
        program = Toy()
        program.assign.demos = demos
        return run_optimizer_free_score(program)

    right = dspy.Example(diagnoses=["essential hypertension"], codes=["I10"])
    wrong = dspy.Example(diagnoses=["essential hypertension"], codes=["I11.9"])
    assert scored([]) == 0.0
    assert scored([wrong]) == 0.0
    assert scored([right, wrong]) == 0.0
    assert scored([right]) == 1.0


def test_bootstrap_keeps_only_demos_that_pass_the_metric(lm):
    # HARD_TRAIN notes are answered wrong without demos: no trace passes, so no demo is kept
    # and the compiled program is no better than the hand-written one
    run = run_optimizer(Toy(), HARD_TRAIN, DEV, get_optimizer("bootstrap"), SETTINGS)
    assert run.program.assign.demos == []
    assert (run.before.micro_f1, run.after.micro_f1) == (0.0, 0.0)


def test_gepa_rewrites_the_instruction_from_feedback(lm):
    run = run_optimizer(Toy(), HARD_TRAIN, DEV, get_optimizer("gepa"), SETTINGS, proposer=lm)
    assert run.status == "complete"
    assert (run.before.micro_f1, run.after.micro_f1) == (0.0, 1.0)
    assert KEYWORD in instructions(run.program)
    assert run.program.assign.demos == []


def test_bootstrap_demos_go_to_every_stage(lm):
    run = run_optimizer(Toy(), TRAIN, DEV, get_optimizer("bootstrap"), SETTINGS)
    assert len(run.program.extract.demos) == 2
    assert len(run.program.assign.demos) == 2


def test_weak_proposer_fails_with_a_clear_message():
    weak = scripted_lm(proposer_reply=None)
    for name in ("mipro", "gepa"):
        with pytest.raises(CompileFailed, match="--reflection-model"):
            run_optimizer(Toy(), TRAIN, DEV, get_optimizer(name), SETTINGS, proposer=weak)


def test_ctrl_c_keeps_the_best_program_evaluated_so_far():
    # the model check on the first dev note 2 calls, before-eval 6, then random-search: zero-shot
    # eval 6, labelled eval 6, unshuffled bootstrap 6 + eval 6 (the best, F1 1.0); Ctrl-C in the next
    interrupted = scripted_lm(interrupt_at=2 + 33)
    with dspy.context(lm=interrupted):
        run = run_optimizer(Toy(), TRAIN, DEV, get_optimizer("random-search"), SETTINGS)
    assert run.status == "interrupted"
    assert run.after is None
    assert run.program.assign.demos
    assert run_optimizer_free_score(run.program) == 1.0


def test_ctrl_c_in_bootstrap_keeps_the_demos_gathered():
    # model check 2 calls, before-eval 6; the first training note bootstraps (2 calls); Ctrl-C in the second
    with dspy.context(lm=scripted_lm(interrupt_at=2 + 6 + 3)):
        run = run_optimizer(Toy(), TRAIN, DEV, get_optimizer("bootstrap"), SETTINGS)
    assert run.status == "interrupted"
    assert len(run.program.assign.demos) == 1


def run_optimizer_free_score(program: dspy.Module) -> float:
    from optimizers.compile import evaluate_dev

    return evaluate_dev(program, DEV).micro_f1


class Unbounded(Bootstrap):
    """A plan that ignores the budget, to exercise the hard cap."""

    def plan(self, shape, settings):
        return super().plan(shape, Settings(max_demos=settings.max_demos))


def test_budget_is_a_hard_cap():
    run = run_optimizer(Toy(), TRAIN * 3, DEV, Unbounded(), Settings(budget=4, max_demos=4))
    assert run.status == "budget-exhausted"
    check, before, after = 2, 6, 6
    assert run.lm_calls - check - before - after <= 4


def test_save_load_round_trip(tmp_path, lm):
    run = run_optimizer(Toy(), TRAIN, DEV, get_optimizer("bootstrap"), SETTINGS)
    metadata = run_metadata(run, SETTINGS, model="scripted/toy", kb_release="ICD-10-CM April 1 2026")
    path = save_compiled(tmp_path / "toy.json", "toy", run.program, metadata)

    compiled = load_compiled(path, program="toy", kb_release="ICD-10-CM April 1 2026")
    loaded = apply_compiled(Toy(), compiled)
    assert json.dumps(loaded.dump_state(), sort_keys=True) == json.dumps(run.program.dump_state(), sort_keys=True)
    assert [loaded(note=e.note).codes for e in DEV] == [run.program(note=e.note).codes for e in DEV]
    assert compiled.metadata["scores"]["after"]["micro_f1"] == 1.0
    assert compiled.metadata["optimizer"] == "bootstrap"
    assert compiled.metadata["versions"]["dspy"] == dspy.__version__


def test_refuses_another_program_or_release(tmp_path):
    path = save_compiled(tmp_path / "toy.json", "clh", Toy(), {"format": "icd-coder.compiled/1", "kb_release": "A"})
    with pytest.raises(CompiledFileError, match="compiled for program 'clh', not 'medcoder'"):
        load_compiled(path, program="medcoder")
    with pytest.raises(CompiledFileError, match="knowledge base 'A' but the loaded one is 'B'"):
        load_compiled(path, program="clh", kb_release="B")
    with pytest.raises(CompiledFileError, match="no compiled program"):
        load_compiled(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CompiledFileError, match="not a compiled program"):
        load_compiled(tmp_path / "bad.json")


def test_state_of_another_structure_is_refused(tmp_path):
    class OneStage(dspy.Module):
        def __init__(self):
            super().__init__()
            self.only = dspy.Predict("note -> codes")

    path = save_compiled(tmp_path / "one.json", "toy", OneStage(), {"format": "icd-coder.compiled/1"})
    with pytest.raises(CompiledFileError, match="are not those of program"):
        apply_compiled(Toy(), load_compiled(path), path)


def test_a_file_compiled_before_a_field_was_added_keeps_each_text_on_its_field(tmp_path):
    class Before(dspy.Module):
        def __init__(self):
            super().__init__()
            self.extract = dspy.Predict(dspy.Signature("note -> diagnoses: list[str]", "Old instruction."))
            self.assign = dspy.Predict("diagnoses: list[str] -> codes: list[str]")

    before = Before()
    before.extract.signature = before.extract.signature.with_updated_fields("diagnoses", desc="Saved description.")
    path = save_compiled(tmp_path / "before.json", "toy", before, {"format": "icd-coder.compiled/1"})

    class After(Before):
        def __init__(self):
            super().__init__()
            self.extract = dspy.Predict(dspy.Signature("note, problems: list[str] -> diagnoses: list[str]", "New."))

    after = apply_compiled(After(), load_compiled(path), path)
    fields = after.extract.signature.fields
    assert after.extract.signature.instructions == "Old instruction."
    assert fields["diagnoses"].json_schema_extra["desc"] == "Saved description."
    assert fields["problems"].json_schema_extra["prefix"] == "Problems:"


# --- `cli.py compile` end to end: real programs and KB, DSPy -> HTTP to a scripted server -------


@pytest.fixture(scope="module")
def server():
    from tests.programs.scripted_server import ScriptedServer

    saved = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    with ScriptedServer() as running:
        yield running
    dspy.cache = saved


@pytest.fixture(scope="module")
def notes_jsonl(tmp_path_factory):
    from pathlib import Path

    examples = Path(__file__).resolve().parents[2] / "data" / "examples"
    gold = {"diabetes_followup": ["I10", "E11.65"], "knee_injury": ["S83.511A"], "asthma_visit": ["J45.41"]}
    path = tmp_path_factory.mktemp("notes") / "notes.jsonl"
    path.write_text("".join(
        json.dumps({"id": name, "text": (examples / f"{name}.txt").read_text(encoding="utf-8"), "codes": codes}) + "\n"
        for name, codes in gold.items()
    ))
    return path


def cli_run(*args):
    from click.testing import CliRunner

    from cli import cli

    return CliRunner().invoke(cli, [*map(str, args)])


def test_cli_compile_dry_run_then_compile_then_predict_and_compare(kb_path, server, notes_jsonl, tmp_path):
    common = ["--model", "scripted", "--api-base", server.url, "--db", kb_path]
    data = ["--train", f"jsonl:{notes_jsonl}", "--dev", f"jsonl:{notes_jsonl}"]
    out = tmp_path / "compiled" / "medcoder.json"

    dry = cli_run("compile", "--program", "medcoder", *common, *data, "--optimizer", "random-search",
                  "--dry-run", "--json", "--out", out)
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["lm_calls"] > 0 and json.loads(dry.stdout)["prompt_tokens"] > 0
    assert not out.exists() and not server.requests

    done = cli_run("compile", "--program", "medcoder", *common, *data, "--optimizer", "bootstrap", "--max-demos", "2",
                   "--json", "--out", out)
    assert done.exit_code == 0, done.output
    metadata = json.loads(out.read_text())["metadata"]
    assert metadata["status"] == "complete" and metadata["optimizer"] == "bootstrap"
    assert metadata["datasets"]["train"]["notes"] == 3 and len(metadata["datasets"]["train"]["sha256"]) == 64
    assert metadata["kb_release"] and metadata["scores"]["after"]["notes"] == 3
    assert metadata["scores"]["floor"]["notes"] == 3

    predicted = cli_run("predict", "data/examples/diabetes_followup.txt", "--program", out, *common, "--json")
    assert predicted.exit_code == 0, predicted.output
    assert json.loads(predicted.stdout)["result"]["program"] == "medcoder"

    compared = cli_run("compare", "--compiled", out, *common, "--dataset", f"jsonl:{notes_jsonl}", "--json")
    assert compared.exit_code == 0, compared.output
    systems = json.loads(compared.stdout)["systems"]
    assert [s["system"] for s in systems] == ["floor (--model none)", "medcoder", str(out)]
    assert systems[2]["difference"]["baseline"] == "medcoder"
    floor, *programs = systems
    assert floor["lm_calls"] == 0 and floor["vs_floor"] is None and floor["notes"] == 3
    assert all(s["lm_calls"] > 0 and s["notes"] == 3 for s in programs)
    assert all(s["vs_floor"]["baseline"] == "floor (--model none)" for s in programs)
    assert floor["answers"] == [] and all([a["stage"] for a in s["answers"]] == ["extract", "rerank"] for s in programs)
    assert all(s["constrained_answers"] == 0 and s["parse_failures"] == 0 for s in programs)

    both = cli_run("compare", "--compiled", out, *common, "--decoding", "off", "--decoding", "llama.cpp", "--dataset",
                   f"jsonl:{notes_jsonl}", "--json")
    assert both.exit_code == 0, both.output
    rows = json.loads(both.stdout)["systems"]
    assert [s["system"] for s in rows] == ["floor (--model none)", "medcoder [off]", f"{out} [off]", "medcoder [llama.cpp]",
                                           f"{out} [llama.cpp]"]
    assert rows[2]["difference"]["baseline"] == "medcoder [off]" and rows[4]["difference"]["baseline"] == "medcoder [llama.cpp]"
    for off, constrained in ((rows[1], rows[3]), (rows[2], rows[4])):
        calls = sum(stage["calls"] for stage in constrained["answers"])
        assert calls and constrained["constrained_answers"] == calls and constrained["answers_outside_candidates"] == 0
        assert off["vs_unconstrained"] is None and constrained["vs_unconstrained"]["baseline"] == off["system"]
        assert constrained["micro"] == off["micro"] and constrained["vs_unconstrained"]["delta_micro_f1"] == 0
    alone = cli_run("compare", "--compiled", out, "--no-hand-written", *common, "--decoding", "off", "--decoding",
                    "llama.cpp", "--dataset", f"jsonl:{notes_jsonl}", "--json")
    assert alone.exit_code == 0, alone.output
    compiled_only = json.loads(alone.stdout)["systems"]
    assert [s["system"] for s in compiled_only] == ["floor (--model none)", f"{out} [off]", f"{out} [llama.cpp]"]
    assert compiled_only[2]["difference"] is None and compiled_only[2]["vs_unconstrained"]["baseline"] == f"{out} [off]"
    assert compiled_only[2]["micro"] == rows[4]["micro"]
    table = cli_run("compare", "--compiled", out, *common, "--decoding", "off", "--decoding", "llama.cpp", "--dataset",
                    f"jsonl:{notes_jsonl}")
    assert table.exit_code == 0, table.output
    assert "decoded under constraints vs off" in table.output and "medcoder.json [llama.cpp]" in table.output, table.output
    evaluated = cli_run("evaluate", "--dataset", f"jsonl:{notes_jsonl}", "--program", "medcoder", "--model", "none",
                        "--db", kb_path, "--json")
    assert json.loads(evaluated.stdout)["micro"] == floor["micro"]


def test_cli_compile_refuses_unlabelled_data_and_tiny_budgets(kb_path, notes_jsonl, tmp_path):
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text(json.dumps({"id": "a", "text": "Hypertension.", "codes": []}) + "\n")
    common = ["--program", "clh", "--db", kb_path, "--out", tmp_path / "x.json", "--dry-run"]
    result = cli_run("compile", *common, "--train", f"jsonl:{unlabelled}", "--dev", f"jsonl:{notes_jsonl}", "--optimizer", "bootstrap")
    assert result.exit_code == 1 and "no gold codes" in result.output
    result = cli_run("compile", *common, "--train", f"jsonl:{notes_jsonl}", "--dev", f"jsonl:{notes_jsonl}",
                     "--optimizer", "random-search", "--budget", "5")
    assert result.exit_code == 1 and "below one random-search pass" in result.output
