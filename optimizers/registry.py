"""The optimizers `compile` can run, behind one small interface.

Each optimizer turns the run's shape (examples, stages, LM calls per note) and settings into a
`Plan` - the parameters DSPy gets and the LM calls they cost - so that `--dry-run` and
`--budget` use the same arithmetic as the real run. A budget is a number of LM calls (metric
calls for GEPA); a plan that cannot fit raises `BudgetTooSmall` naming the minimum.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import dspy

from icd_graph.errors import IcdError

MIPRO_MINIBATCH = 35
MIPRO_FULL_EVAL_STEPS = 5
MIPRO_VIEW_BATCH = 10
GEPA_MINIBATCH = 3


class UnknownOptimizer(IcdError):
    """An optimizer name that is not in the registry."""


class BudgetTooSmall(IcdError):
    """A --budget below what the optimizer needs for one useful pass."""


@dataclass(frozen=True)
class Settings:
    """What the user chose; stored in the compiled file's metadata."""

    budget: int | None = None
    threads: int = 1
    seed: int = 0
    max_demos: int = 4
    labeled_demos: int = 0
    demo_threshold: float = 0.5
    candidates: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Shape:
    """The size of a run: examples, predictors, and LM calls one note costs."""

    train: int
    dev: int
    stages: int
    calls_per_note: int


@dataclass(frozen=True)
class Plan:
    optimizer: str
    train: int
    parameters: dict[str, Any]
    lm_calls: int
    proposer_calls: int = 0
    metric_calls: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_calls(self) -> int:
        return self.lm_calls + self.proposer_calls


Metric = Callable[..., Any]


class Optimizer(ABC):
    name: str
    summary: str
    uses_proposer: bool = False

    @abstractmethod
    def plan(self, shape: Shape, settings: Settings) -> Plan: ...

    @abstractmethod
    def build(self, metric: Metric, plan: Plan, settings: Settings, proposer: dspy.BaseLM | None) -> Any:
        """The DSPy teleprompter for this plan."""

    @abstractmethod
    def compile(self, teleprompter: Any, student: dspy.Module, trainset: list, devset: list, plan: Plan) -> dspy.Module: ...

    def salvage(self, teleprompter: Any, student: dspy.Module) -> dspy.Module | None:
        """The best program recoverable from an interrupted teleprompter, when it keeps one."""
        return None


def _bootstrap_demos(teleprompter: Any, student: dspy.Module) -> dspy.Module | None:
    """The student with the demos a BootstrapFewShot had gathered when it stopped."""
    traces = getattr(teleprompter, "name2traces", None)
    if not traces:
        return None
    program = student.reset_copy()
    for name, predictor in program.named_predictors():
        predictor.demos = traces.get(name, [])[: teleprompter.max_bootstrapped_demos]
    return program


class Bootstrap(Optimizer):
    name = "bootstrap"
    summary = "BootstrapFewShot: runs the program on training notes, keeps traces that score as demos"

    def plan(self, shape: Shape, settings: Settings) -> Plan:
        train = shape.train
        notes: tuple[str, ...] = ()
        if settings.budget is not None:
            train = min(train, settings.budget // shape.calls_per_note)
            if train < 1:
                raise BudgetTooSmall(
                    f"--budget {settings.budget} is below one training note ({shape.calls_per_note} LM calls); "
                    f"use --budget {shape.calls_per_note} or more"
                )
            if train < shape.train:
                notes = (f"budget allows {train} of {shape.train} training notes",)
        return Plan(
            optimizer=self.name,
            train=train,
            parameters={
                "max_bootstrapped_demos": settings.max_demos,
                "max_labeled_demos": settings.labeled_demos,
                "max_rounds": 1,
                "metric_threshold": settings.demo_threshold,
            },
            lm_calls=train * shape.calls_per_note,
            metric_calls=train,
            notes=notes,
        )

    def build(self, metric, plan, settings, proposer):
        return dspy.BootstrapFewShot(metric=metric, **plan.parameters)

    def compile(self, teleprompter, student, trainset, devset, plan):
        return teleprompter.compile(student, trainset=trainset[: plan.train])

    def salvage(self, teleprompter, student):
        return _bootstrap_demos(teleprompter, student)


class RandomSearch(Optimizer):
    name = "random-search"
    summary = "BootstrapFewShotWithRandomSearch: several bootstrapped demo sets, the best on dev wins"
    default_candidates = 6

    def plan(self, shape: Shape, settings: Settings) -> Plan:
        bootstrap = shape.train * shape.calls_per_note
        evaluation = shape.dev * shape.calls_per_note

        def cost(candidates: int) -> int:
            # zero-shot and labelled baselines are evaluated only; the unshuffled
            # bootstrap and each random candidate are bootstrapped and evaluated
            return 2 * evaluation + (candidates + 1) * (bootstrap + evaluation)

        candidates = settings.candidates if settings.candidates is not None else self.default_candidates
        if settings.budget is not None:
            if settings.budget < cost(0):
                raise BudgetTooSmall(
                    f"--budget {settings.budget} is below one random-search pass ({cost(0)} LM calls for "
                    f"{shape.train} training and {shape.dev} dev notes); raise it or use --optimizer bootstrap"
                )
            candidates = min(candidates, (settings.budget - cost(0)) // (bootstrap + evaluation))
        return Plan(
            optimizer=self.name,
            train=shape.train,
            parameters={
                "max_bootstrapped_demos": settings.max_demos,
                "max_labeled_demos": settings.labeled_demos,
                "num_candidate_programs": candidates,
                "num_threads": settings.threads,
                "metric_threshold": settings.demo_threshold,
            },
            lm_calls=cost(candidates),
            metric_calls=(candidates + 1) * shape.train + (candidates + 3) * shape.dev,
        )

    def build(self, metric, plan, settings, proposer):
        return dspy.BootstrapFewShotWithRandomSearch(metric=metric, **plan.parameters)

    def compile(self, teleprompter, student, trainset, devset, plan):
        return teleprompter.compile(student, trainset=trainset, valset=devset)


class Mipro(Optimizer):
    name = "mipro"
    summary = "MIPROv2: proposes instructions and demo sets, searches their combinations with optuna"
    uses_proposer = True
    default_candidates = 3

    def plan(self, shape: Shape, settings: Settings) -> Plan:
        candidates = max(2, settings.candidates if settings.candidates is not None else self.default_candidates)
        bootstrap = max(0, candidates - 2) * shape.train * shape.calls_per_note
        proposals = math.ceil(shape.train / MIPRO_VIEW_BATCH) + 2 + shape.stages + candidates * shape.stages
        minibatch = shape.dev > MIPRO_MINIBATCH
        batch = MIPRO_MINIBATCH if minibatch else shape.dev
        full = shape.dev * shape.calls_per_note

        def trial_calls(trials: int) -> int:
            fulls = (trials // MIPRO_FULL_EVAL_STEPS + 1) if minibatch else 0
            return full + trials * batch * shape.calls_per_note + fulls * full

        trials = int(max(2 * 2 * shape.stages * math.log2(candidates), 1.5 * candidates))
        if settings.budget is not None:
            fixed = bootstrap + proposals
            affordable = 0
            while trial_calls(affordable + 1) + fixed <= settings.budget:
                affordable += 1
            if affordable < 1:
                raise BudgetTooSmall(
                    f"--budget {settings.budget} is below one MIPROv2 trial ({fixed + trial_calls(1)} LM calls "
                    f"with {candidates} candidates); raise it, lower --candidates, or use --optimizer bootstrap"
                )
            trials = min(trials, affordable)
        return Plan(
            optimizer=self.name,
            train=shape.train,
            parameters={
                "num_candidates": candidates,
                "num_trials": trials,
                "max_bootstrapped_demos": settings.max_demos,
                "max_labeled_demos": settings.labeled_demos,
                "minibatch": minibatch,
                "minibatch_size": batch,
                "num_threads": settings.threads,
                "seed": settings.seed,
            },
            lm_calls=bootstrap + trial_calls(trials),
            proposer_calls=proposals,
            metric_calls=max(0, candidates - 2) * shape.train + trials * batch + shape.dev,
        )

    def build(self, metric, plan, settings, proposer):
        p = plan.parameters
        return dspy.MIPROv2(
            metric=metric,
            prompt_model=proposer,
            auto=None,
            num_candidates=p["num_candidates"],
            max_bootstrapped_demos=p["max_bootstrapped_demos"],
            max_labeled_demos=p["max_labeled_demos"],
            num_threads=p["num_threads"],
            seed=p["seed"],
            metric_threshold=settings.demo_threshold,
        )

    def compile(self, teleprompter, student, trainset, devset, plan):
        p = plan.parameters
        return teleprompter.compile(
            student,
            trainset=trainset,
            valset=devset,
            num_trials=p["num_trials"],
            minibatch=p["minibatch"],
            minibatch_size=p["minibatch_size"],
        )


class Gepa(Optimizer):
    name = "gepa"
    summary = "GEPA: reflects on textual feedback about wrong codes and rewrites the stage instructions"
    uses_proposer = True
    default_passes = 3

    def plan(self, shape: Shape, settings: Settings) -> Plan:
        metric_calls = settings.budget if settings.budget is not None else self.default_passes * (shape.train + shape.dev)
        if metric_calls < shape.dev + GEPA_MINIBATCH:
            raise BudgetTooSmall(
                f"--budget {metric_calls} metric calls cannot cover GEPA's first dev pass and one reflection "
                f"({shape.dev + GEPA_MINIBATCH}); raise it"
            )
        return Plan(
            optimizer=self.name,
            train=shape.train,
            parameters={
                "max_metric_calls": metric_calls,
                "reflection_minibatch_size": GEPA_MINIBATCH,
                "num_threads": settings.threads,
                "seed": settings.seed,
            },
            lm_calls=metric_calls * shape.calls_per_note,
            proposer_calls=math.ceil(max(0, metric_calls - shape.dev) / (2 * GEPA_MINIBATCH)),
            metric_calls=metric_calls,
            notes=("the budget counts metric calls (one per note scored)",),
        )

    def build(self, metric, plan, settings, proposer):
        return dspy.GEPA(metric=metric, reflection_lm=proposer, track_stats=False, **plan.parameters)

    def compile(self, teleprompter, student, trainset, devset, plan):
        return teleprompter.compile(student, trainset=trainset, valset=devset)


class NoStageDemos(IcdError):
    """A program that cannot derive demos from gold labels (no `stage_demos`), or a training set
    that gives none."""


class GoldDemoTeleprompter:
    """Sets each predictor's demos to up to `max_demos` worked examples the program derives from
    gold labels (`program.stage_demos(example) -> {predictor name: [dspy.Example]}`), drawn
    deterministically with `seed`. Makes no LM call."""

    def __init__(self, max_demos: int, seed: int):
        self.max_demos = max_demos
        self.seed = seed

    def compile(self, student: dspy.Module, trainset: list) -> dspy.Module:
        derive = getattr(student, "stage_demos", None)
        if derive is None:
            raise NoStageDemos(f"{type(student).__name__} cannot derive demos from gold labels; use --optimizer bootstrap")
        pools: dict[str, list] = {}
        for example in trainset:
            for name, demos in derive(example).items():
                pools.setdefault(name, []).extend(demos)
        if not any(pools.values()):
            raise NoStageDemos("no training note gave a demo (no gold code found in its note); check --train and --labels")
        program = student.reset_copy()
        rng = random.Random(self.seed)
        for name, predictor in program.named_predictors():
            pool = pools.get(name, [])
            predictor.demos = rng.sample(pool, min(self.max_demos, len(pool)))
        return program


class GoldDemos(Optimizer):
    name = "gold-demos"
    summary = "Worked demos for every stage derived from the gold codes and mentions and the KB, no LM calls"

    def plan(self, shape: Shape, settings: Settings) -> Plan:
        return Plan(
            optimizer=self.name,
            train=shape.train,
            parameters={"max_demos": settings.max_demos, "seed": settings.seed},
            lm_calls=0,
            notes=("demos come from gold labels: only the dev scoring before and after calls the LM",),
        )

    def build(self, metric, plan, settings, proposer):
        return GoldDemoTeleprompter(settings.max_demos, settings.seed)

    def compile(self, teleprompter, student, trainset, devset, plan):
        return teleprompter.compile(student, trainset[: plan.train])


OPTIMIZERS: dict[str, Optimizer] = {
    opt.name: opt for opt in (Bootstrap(), RandomSearch(), Mipro(), Gepa(), GoldDemos())
}


def get_optimizer(name: str) -> Optimizer:
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise UnknownOptimizer(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}") from None
