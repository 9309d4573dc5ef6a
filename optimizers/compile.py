"""Compile a coding program against gold codes, and save / load compiled programs.

A compiled file is JSON (never pickle):
    {"program": "clh", "metadata": {...}, "state": <dspy Module.dump_state()>}
`metadata` holds the format, model, optimizer, settings, plan, dataset names and content
hashes, dev scores before and after, status, LM calls, date, package versions and the
knowledge-base release. `load_compiled` refuses a file made for another program or release.

Runs are interrupt-safe: Ctrl-C, a spent budget or an optimizer failure leave the best program
known so far (the best full dev evaluation seen, else the demos bootstrapped so far, else the
hand-written program) to be saved, with the status in the metadata.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import platform
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from icd_graph.errors import IcdError
from optimizers.feedback import code_feedback
from optimizers.metrics import aggregate, code_f1, score_note
from optimizers.registry import Optimizer, Plan, Settings, Shape

FORMAT = "icd-coder.compiled/1"
CHARS_PER_TOKEN = 4
PLACEHOLDER_CHARS = 800
OUTPUT_CHARS = 200

logger = logging.getLogger(__name__)


class CompiledFileError(IcdError):
    """A compiled-program file that is missing, malformed or made for another program or release."""


class CompileFailed(IcdError):
    """An optimizer that stopped with an error (e.g. a proposer model whose output cannot be parsed)."""


class NoGoldCodes(IcdError):
    """A training or dev set without gold codes to optimize against."""


class BudgetExhausted(BaseException):
    """Raised from the metric once the LM-call budget is spent. A BaseException, like
    KeyboardInterrupt, because DSPy's optimizers count and swallow per-example Exceptions."""


# --- the metric -------------------------------------------------------------------------------


class CallCounter(BaseCallback):
    """Counts LM calls (all models) and reports the count to `on_call`; keeps the last failure."""

    def __init__(self, on_call: Callable[[int], None] | None = None):
        self.calls = 0
        self.last_error: BaseException | None = None
        self._lock = threading.Lock()
        self._on_call = on_call

    def on_lm_start(self, call_id, instance, inputs):
        with self._lock:
            self.calls += 1
            calls = self.calls
        if self._on_call:
            self._on_call(calls)

    def on_lm_end(self, call_id, outputs, exception=None):
        if exception is not None:
            self.last_error = exception


class CodeF1Metric:
    """Per-note code F1 as a DSPy metric. With `feedback`, returns the GEPA form
    dspy.Prediction(score, feedback). Stops the run once `counter` passes `budget` LM calls."""

    def __init__(self, *, feedback: bool = False, counter: CallCounter | None = None, budget: int | None = None):
        self.feedback = feedback
        self.counter = counter
        self.budget = budget
        self.start = counter.calls if counter else 0

    def __call__(self, gold, pred, trace=None, pred_name=None, pred_trace=None):
        if self.budget is not None and self.counter is not None and self.counter.calls - self.start >= self.budget:
            raise BudgetExhausted(f"{self.counter.calls - self.start} LM calls spent (budget {self.budget})")
        gold_codes = list(gold.get("codes") or [])
        predicted = list(pred.get("codes") or []) if pred is not None else []
        score = code_f1(gold_codes, predicted)
        if not self.feedback:
            return score
        result = pred.get("result") if pred is not None else None
        return dspy.Prediction(score=score, feedback=code_feedback(gold_codes, predicted, getattr(result, "trace", ())))


# --- dev scores -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DevScore:
    notes: int
    micro_f1: float
    macro_f1: float
    category_f1: float
    mean_note_f1: float
    failures: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_predictions(examples: Sequence[dspy.Example], predictions: Sequence[Any]) -> DevScore:
    """Scores aligned predictions (None for a note whose program raised) with optimizers.metrics."""
    notes = []
    for index, (example, prediction) in enumerate(zip(examples, predictions, strict=True)):
        predicted = list(prediction.get("codes") or []) if prediction is not None else []
        notes.append(score_note(str(example.get("id", index)), example.codes, predicted))
    scores = aggregate(notes)
    return DevScore(
        notes=len(notes),
        micro_f1=scores.micro.f1,
        macro_f1=scores.macro.f1,
        category_f1=scores.category_micro.f1,
        mean_note_f1=sum(code_f1(n.gold, n.predicted) for n in notes) / len(notes) if notes else 0.0,
        failures=sum(p is None for p in predictions),
    )


def evaluate_dev(program: dspy.Module, devset: Sequence[dspy.Example], threads: int = 1) -> DevScore:
    evaluation = dspy.Evaluate(
        devset=list(devset),
        metric=CodeF1Metric(),
        num_threads=threads,
        display_progress=False,
        max_errors=len(devset) + 1,
    )
    result = evaluation(program)
    predictions = [p if p is not None and "codes" in p else None for _, p, _ in result.results]
    return score_predictions([e for e, _, _ in result.results], predictions)


# --- best program so far ------------------------------------------------------------------------


class BestTracker(BaseCallback):
    """Keeps the state of the best program DSPy evaluated on the full dev set during the run."""

    def __init__(self, devset: Sequence[dspy.Example]):
        self._dev = {id(example) for example in devset}
        self._running: dict[str, dspy.Module] = {}
        self._lock = threading.Lock()
        self.score: float | None = None
        self.state: dict | None = None

    def on_evaluate_start(self, call_id, instance, inputs):
        devset = inputs.get("devset") or getattr(instance, "devset", None) or []
        if {id(example) for example in devset} == self._dev:
            self._running[call_id] = inputs["program"]

    def on_evaluate_end(self, call_id, outputs, exception=None):
        program = self._running.pop(call_id, None)
        if program is None or outputs is None or exception is not None:
            return
        score = float(outputs.score)
        with self._lock:
            if self.score is None or score > self.score:
                self.score, self.state = score, program.dump_state()


# --- compile ------------------------------------------------------------------------------------


def calls_per_note(program: dspy.Module) -> int:
    """LM calls one note costs: the program's own `lm_calls_per_note` when it declares one
    (loops and per-candidate stages), else one per predictor."""
    return int(getattr(program, "lm_calls_per_note", 0) or len(program.predictors()) or 1)


def shape_of(program: dspy.Module, trainset: Sequence, devset: Sequence) -> Shape:
    return Shape(len(trainset), len(devset), len(program.predictors()), calls_per_note(program))


@dataclass(frozen=True)
class Estimate:
    plan: Plan
    eval_calls: int
    prompt_tokens_per_call: int
    prompt_tokens: int

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self.plan), "total_calls": self.plan.total_calls, "eval_calls": self.eval_calls,
                "prompt_tokens_per_call": self.prompt_tokens_per_call, "prompt_tokens": self.prompt_tokens}


def prompt_chars(predictor: dspy.Predict, sample: dict[str, str], demos: int) -> int:
    """Characters of the prompt the adapter renders for `predictor` with `demos` stand-in demos.
    Inputs named like the example's fields get the sample's text, others PLACEHOLDER_CHARS."""
    adapter = dspy.settings.adapter or dspy.ChatAdapter()
    signature = predictor.signature
    inputs = {name: sample.get(name, "x" * PLACEHOLDER_CHARS) for name in signature.input_fields}
    outputs = {name: "x" * OUTPUT_CHARS for name in signature.output_fields}
    messages = adapter.format(signature, [{**inputs, **outputs}] * demos, inputs)
    return sum(len(str(message.get("content", ""))) for message in messages)


def estimate(
    program: dspy.Module, trainset: Sequence[dspy.Example], devset: Sequence[dspy.Example], optimizer: Optimizer, settings: Settings
) -> Estimate:
    """The optimizer's plan plus the dev evaluations before and after; tokens by rendering each
    stage's prompt with the adapter (4 characters a token), averaged between no demos and the
    most demos the run can add. Spends nothing."""
    shape = shape_of(program, trainset, devset)
    plan = optimizer.plan(shape, settings)
    sample = (list(trainset) or list(devset))[0]
    text = {key: str(sample[key]) for key in sample.inputs().keys()}
    predictors = program.predictors()
    chars = sum(prompt_chars(p, text, 0) + prompt_chars(p, text, settings.max_demos) for p in predictors)
    per_call = chars // (2 * len(predictors) * CHARS_PER_TOKEN) if predictors else 0
    eval_calls = 2 * shape.dev * shape.calls_per_note
    return Estimate(plan, eval_calls, per_call, per_call * (plan.total_calls + eval_calls))


@dataclass
class CompileRun:
    """The outcome of one optimizer run; `program` is what gets saved."""

    program: dspy.Module
    status: str
    plan: Plan
    floor: DevScore
    before: DevScore
    after: DevScore | None
    lm_calls: int
    message: str = ""


def run_optimizer(
    student: dspy.Module,
    trainset: Sequence[dspy.Example],
    devset: Sequence[dspy.Example],
    optimizer: Optimizer,
    settings: Settings,
    *,
    proposer: dspy.BaseLM | None = None,
    on_call: Callable[[int], None] | None = None,
) -> CompileRun:
    """Scores the program's rules alone (no model: the floor a compiled program must beat) and
    the hand-written program on dev, optimizes it, scores the result.

    Never raises for an interrupted, over-budget or failed optimizer: the returned run says
    which (status complete | interrupted | budget-exhausted | failed) and holds the best program
    known. Ctrl-C skips the final dev evaluation so that the program is saved at once. Raises
    CompileFailed before spending the budget when the proposer model cannot answer."""
    trainset, devset = list(trainset), list(devset)
    plan = optimizer.plan(shape_of(student, trainset, devset), settings)
    if optimizer.uses_proposer:
        check_proposer(optimizer, proposer or dspy.settings.lm)
    counter = CallCounter(on_call)
    tracker = BestTracker(devset)
    budget = settings.budget if optimizer.name != "gepa" else None
    errors = len(trainset) + len(devset) + 1
    with dspy.context(lm=None):
        floor = evaluate_dev(student, devset, settings.threads)
    with dspy.context(callbacks=[*dspy.settings.callbacks, counter], max_errors=errors):
        check_model(student, devset)
        before = evaluate_dev(student, devset, settings.threads)
        metric = CodeF1Metric(feedback=optimizer.name == "gepa", counter=counter, budget=budget)
        teleprompter = optimizer.build(metric, plan, settings, proposer)
        status, message = "complete", ""
        compiled = None
        try:
            with dspy.context(callbacks=[*dspy.settings.callbacks, tracker]):
                compiled = optimizer.compile(teleprompter, student, trainset, devset, plan)
        except KeyboardInterrupt:
            status, message = "interrupted", "interrupted; saved the best program found so far"
        except BudgetExhausted as exc:
            status, message = "budget-exhausted", f"budget spent ({exc}); saved the best program found so far"
        except Exception as exc:  # noqa: BLE001 - third-party optimizers fail in many ways
            logger.debug("optimizer %s failed", optimizer.name, exc_info=True)
            status, message = "failed", failure_message(optimizer, exc)
        if compiled is None:
            compiled = best_known(student, teleprompter, optimizer, tracker)
        after = None
        if status != "interrupted":
            try:
                after = evaluate_dev(compiled, devset, settings.threads)
            except KeyboardInterrupt:
                status, message = "interrupted", "interrupted while scoring the result on dev; saved it unscored"
        if after is not None and after.notes and after.failures == after.notes and status == "complete":
            status, message = "failed", f"every dev note failed in the final scoring: {last_failure(counter)}"
    return CompileRun(compiled, status, plan, floor, before, after, counter.calls, message)


def check_model(student: dspy.Module, devset: Sequence[dspy.Example]) -> None:
    """The program on the first dev note before anything else: a model that cannot answer
    (server down, HTTP errors, empty answers) stops the run at once, with nothing to save. The
    answers stay in DSPy's cache for the dev scoring that follows."""
    from dspy.utils.exceptions import LMError

    from programs.errors import NoteError
    from programs.lm import model_error

    try:
        student(**devset[0].inputs())
    except LMError as exc:
        raise model_error(exc, dspy.settings.lm) from None
    except NoteError:
        pass


def last_failure(counter: CallCounter) -> str:
    """The last LM failure of a run, in one line (see programs.lm.model_error)."""
    from programs.lm import model_error

    if counter.last_error is None:
        return "the program raised on every note"
    return str(model_error(counter.last_error, dspy.settings.lm))


class ProposeInstruction(dspy.Signature):
    """Rewrite the instruction so that an assistant codes clinical notes more accurately."""

    current_instruction: str = dspy.InputField()
    new_instruction: str = dspy.OutputField()


def check_proposer(optimizer: Optimizer, proposer: dspy.BaseLM | None) -> None:
    """One structured call to the proposer / reflection model before spending the budget:
    weak models (e.g. a small base model) cannot answer in DSPy's formats."""
    from dspy.utils.exceptions import AdapterParseError

    if proposer is None:
        raise CompileFailed(f"{optimizer.name} needs a model to propose instructions: pass --model or --reflection-model")
    try:
        with dspy.context(lm=proposer):
            answer = dspy.Predict(ProposeInstruction)(current_instruction="Assign ICD-10-CM codes.").new_instruction
    except AdapterParseError as exc:
        raise CompileFailed(failure_message(optimizer, exc)) from None
    if not str(answer or "").strip():
        raise CompileFailed(failure_message(optimizer, ValueError("the proposer returned an empty instruction (parse)")))


def best_known(student: dspy.Module, teleprompter: Any, optimizer: Optimizer, tracker: BestTracker) -> dspy.Module:
    if tracker.state is not None:
        program = student.deepcopy()
        program.load_state(tracker.state)
        return program
    return optimizer.salvage(teleprompter, student) or student.deepcopy()


def failure_message(optimizer: Optimizer, exc: Exception) -> str:
    from dspy.utils.exceptions import AdapterParseError

    first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
    if optimizer.uses_proposer and (isinstance(exc, AdapterParseError) or "parse" in first.lower()):
        return (
            f"{optimizer.name} stopped: the proposer model's instructions could not be parsed ({first}). "
            "Instruction proposers need a stronger model: pass --reflection-model (e.g. an "
            "OpenAI-compatible server via --api-base), or use --optimizer bootstrap or random-search"
        )
    return f"{optimizer.name} stopped with {exc.__class__.__name__}: {first}"


# --- the compiled file ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Compiled:
    program: str
    metadata: dict[str, Any]
    state: dict[str, Any]


def gold_examples(dataset) -> list[dspy.Example]:
    """The dataset's notes as dspy.Examples (data.dspy_examples); refuses a set with no gold codes."""
    from data.dspy_examples import to_examples

    if not any(record.codes for record in dataset.records):
        raise NoGoldCodes(f"{dataset.name} has no gold codes to compile against; pass --labels CSV (aci:*) or use a labelled dataset")
    return to_examples(dataset.records)


def dataset_metadata(dataset, labels: Path | None = None) -> dict[str, Any]:
    examples = gold_examples(dataset)
    return {"spec": dataset.name, "labels": str(labels) if labels else None, "notes": len(examples), "sha256": dataset_hash(examples)}


def dataset_hash(examples: Iterable[dspy.Example]) -> str:
    """sha256 of the notes' ids, texts and sorted gold codes, in order."""
    digest = hashlib.sha256()
    for example in examples:
        line = {"id": str(example.get("id", "")), "note": example.note, "codes": sorted(example.codes)}
        digest.update(json.dumps(line, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("icd-coder", "dspy", "duckdb", "bm25s", "gepa", "optuna"):
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_metadata(run: CompileRun, settings: Settings, **extra: Any) -> dict[str, Any]:
    """The metadata of a compiled file; `extra` adds the caller's fields (model, datasets, kb_release)."""
    return {
        "format": FORMAT,
        **extra,
        "optimizer": run.plan.optimizer,
        "settings": settings.as_dict(),
        "plan": asdict(run.plan),
        "status": run.status,
        "message": run.message,
        "lm_calls": run.lm_calls,
        "scores": {
            "floor": run.floor.as_dict(),
            "before": run.before.as_dict(),
            "after": run.after.as_dict() if run.after else None,
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": package_versions(),
    }


def save_compiled(path: Path, program_name: str, program: dspy.Module, metadata: dict[str, Any]) -> Path:
    """Writes atomically (temporary file then rename), so an interrupt never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"program": program_name, "metadata": metadata, "state": program.dump_state()}
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_compiled(path: Path, *, program: str | None = None, kb_release: str | None = None) -> Compiled:
    """Reads a compiled file, checking all of it (see `check_payload`); refuses one made for
    another program or knowledge-base release."""
    from data.text import read_text

    path = Path(path)
    if not path.is_file():
        raise CompiledFileError(f"no compiled program at {path}; create one with `python cli.py compile ... --out {path}`")
    try:
        payload = json.loads(read_text(path))
    except IcdError as exc:
        raise CompiledFileError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise CompiledFileError(f"{path} is not a compiled program file (not JSON: {exc.msg} on line {exc.lineno})") from None
    problem = check_payload(payload)
    if problem:
        raise CompiledFileError(f"{path} is not a valid compiled program file: {problem}; recompile it")
    compiled = Compiled(payload["program"], payload["metadata"], payload["state"])
    if program is not None and compiled.program != program:
        raise CompiledFileError(
            f"{path} was compiled for program {compiled.program!r}, not {program!r}; "
            f"use --program {compiled.program} or compile {program}"
        )
    made_for = compiled.metadata.get("kb_release")
    if kb_release is not None and made_for is not None and made_for != kb_release:
        raise CompiledFileError(
            f"{path} was compiled against knowledge base {made_for!r} but the loaded one is {kb_release!r}; "
            "point --db at that release or recompile with `python cli.py compile`"
        )
    return compiled


STAGE_KEYS = {"traces", "train", "demos", "signature", "lm"}


def check_payload(payload: Any) -> str | None:
    """What is wrong with a compiled file's content, or None: every part of it is checked on load,
    before any model call, so that a broken file never half-works."""
    if not isinstance(payload, dict) or not {"program", "metadata", "state"} <= payload.keys():
        return "it needs program, metadata and state"
    if not isinstance(payload["program"], str) or not payload["program"]:
        return '"program" must be a program name'
    metadata = payload["metadata"]
    if not isinstance(metadata, dict):
        return '"metadata" must be an object'
    if metadata.get("format") != FORMAT:
        return f"format {metadata.get('format')!r}, expected {FORMAT!r}"
    if not isinstance(metadata.get("kb_release"), (str, type(None))):
        return '"metadata.kb_release" must be a string'
    state = payload["state"]
    if not isinstance(state, dict) or not state:
        return '"state" must be an object with one entry per stage'
    for stage, saved in state.items():
        problem = check_stage(saved)
        if problem:
            return f"stage {stage!r}: {problem}"
    return None


def check_stage(saved: Any) -> str | None:
    """What is wrong with one stage's saved state (DSPy's Predict.dump_state), or None."""
    if not isinstance(saved, dict):
        return "must be an object"
    if not {"demos", "signature"} <= saved.keys() or not saved.keys() <= STAGE_KEYS:
        return f"needs demos and signature and may hold only {', '.join(sorted(STAGE_KEYS))}"
    demos = saved["demos"]
    if not isinstance(demos, list) or not all(isinstance(demo, dict) for demo in demos):
        return '"demos" must be a list of objects'
    if any(not isinstance(saved.get(key, []), list) for key in ("traces", "train")):
        return '"traces" and "train" must be lists'
    if saved.get("lm") is not None:
        return '"lm" must be null: a compiled file does not choose the model'
    signature = saved["signature"]
    if not isinstance(signature, dict) or not isinstance(signature.get("instructions"), str):
        return '"signature.instructions" must be a string'
    fields = signature.get("fields")
    if not isinstance(fields, list) or not all(
        isinstance(f, dict) and isinstance(f.get("prefix"), str) and isinstance(f.get("description"), str) for f in fields
    ):
        return '"signature.fields" must be a list of {prefix, description} strings'
    return None


def apply_compiled(module: dspy.Module, compiled: Compiled, source: Path | str = "compiled file") -> dspy.Module:
    """Loads the compiled state into a freshly built program of the same kind, once its stages
    match the program's and each stage's saved fields fit the stage's fields (`fitted_fields`)."""
    stages = dict(module.named_predictors())
    if set(compiled.state) != set(stages):
        raise CompiledFileError(
            f"{source}: its stages ({', '.join(sorted(compiled.state))}) are not those of program "
            f"{compiled.program!r} ({', '.join(sorted(stages))}); recompile it"
        )
    state = {}
    for name, predictor in stages.items():
        saved = compiled.state[name]
        fields = fitted_fields(predictor.signature, saved["signature"]["fields"])
        if fields is None:
            raise CompiledFileError(
                f"{source}: the {len(saved['signature']['fields'])} fields saved for stage {name!r} do not fit the "
                f"{len(predictor.signature.fields)} fields of program {compiled.program!r}; recompile it"
            )
        state[name] = {**saved, "signature": {**saved["signature"], "fields": fields}}
    try:
        module.load_state(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise CompiledFileError(
            f"{source}: its state does not fit program {compiled.program!r} (stage {exc} differs); recompile it"
        ) from None
    return module


def fitted_fields(signature, saved: list[dict[str, str]]) -> list[dict[str, str]] | None:
    """The saved {prefix, description} of each field of `signature`, in its order, or None when
    they do not fit. As many as the signature has: taken in order (DSPy's own rule). Fewer (a
    file compiled before a field was added): each saved field goes to the field with its prefix,
    in order, and an added field keeps its own text; DSPy would shift them onto the wrong fields."""
    current = [{"prefix": f.json_schema_extra["prefix"], "description": f.json_schema_extra["desc"]}
               for f in signature.fields.values()]
    if len(saved) == len(current):
        return saved
    fitted, rest = [], list(saved)
    for field in current:
        if rest and rest[0]["prefix"] == field["prefix"]:
            fitted.append(rest.pop(0))
        else:
            fitted.append(field)
    return fitted if not rest and len(saved) < len(current) else None
