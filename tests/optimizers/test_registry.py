"""Optimizer plans: the LM calls a run costs, how a budget shapes it, the dry-run estimate."""

from __future__ import annotations

import dspy
import pytest
from tests.optimizers.scripted import DEV, TRAIN, Toy

from optimizers.compile import CodeF1Metric, BudgetExhausted, CallCounter, estimate
from optimizers.feedback import code_feedback
from optimizers.registry import OPTIMIZERS, BudgetTooSmall, Settings, Shape, UnknownOptimizer, get_optimizer
from programs.result import Dropped, StageTrace

SHAPE = Shape(train=10, dev=5, stages=2, calls_per_note=3)


def test_registry_names_and_unknown():
    assert list(OPTIMIZERS) == ["bootstrap", "random-search", "mipro", "gepa", "gold-demos"]
    with pytest.raises(UnknownOptimizer, match="choose one of bootstrap, random-search, mipro, gepa, gold-demos"):
        get_optimizer("simba")


def test_bootstrap_plan_and_budget():
    plan = get_optimizer("bootstrap").plan(SHAPE, Settings())
    assert (plan.train, plan.lm_calls, plan.metric_calls) == (10, 30, 10)
    capped = get_optimizer("bootstrap").plan(SHAPE, Settings(budget=14))
    assert (capped.train, capped.lm_calls) == (4, 12)
    assert capped.notes == ("budget allows 4 of 10 training notes",)
    with pytest.raises(BudgetTooSmall, match="--budget 3 or more"):
        get_optimizer("bootstrap").plan(SHAPE, Settings(budget=2))


def test_random_search_candidates_fit_the_budget():
    # baselines: 2 evaluations (15 calls each) + unshuffled bootstrap and eval (45) = 75;
    # each further candidate 45
    optimizer = get_optimizer("random-search")
    assert optimizer.plan(SHAPE, Settings(candidates=4)).lm_calls == 75 + 4 * 45
    plan = optimizer.plan(SHAPE, Settings(budget=170, candidates=4))
    assert plan.parameters["num_candidate_programs"] == 2
    assert plan.lm_calls <= 170
    with pytest.raises(BudgetTooSmall, match="below one random-search pass \\(75 LM calls"):
        optimizer.plan(SHAPE, Settings(budget=74))


def test_mipro_trials_fit_the_budget():
    optimizer = get_optimizer("mipro")
    unbounded = optimizer.plan(SHAPE, Settings(candidates=3))
    assert unbounded.parameters["minibatch"] is False
    plan = optimizer.plan(SHAPE, Settings(budget=150, candidates=3))
    assert 1 <= plan.parameters["num_trials"] < unbounded.parameters["num_trials"]
    assert plan.total_calls <= 150
    with pytest.raises(BudgetTooSmall, match="below one MIPROv2 trial"):
        optimizer.plan(SHAPE, Settings(budget=40, candidates=3))


def test_gepa_budget_is_metric_calls():
    plan = get_optimizer("gepa").plan(SHAPE, Settings(budget=40))
    assert plan.parameters["max_metric_calls"] == 40
    assert plan.lm_calls == 120
    assert get_optimizer("gepa").plan(SHAPE, Settings()).metric_calls == 3 * 15
    with pytest.raises(BudgetTooSmall):
        get_optimizer("gepa").plan(SHAPE, Settings(budget=7))


def test_estimate_renders_prompts_and_counts_tokens():
    program = Toy()
    few = estimate(program, TRAIN, DEV, get_optimizer("bootstrap"), Settings(max_demos=1))
    many = estimate(program, TRAIN, DEV, get_optimizer("bootstrap"), Settings(max_demos=8))
    assert few.plan.lm_calls == 3 * 2
    assert few.eval_calls == 2 * 3 * 2
    assert 50 < few.prompt_tokens_per_call < many.prompt_tokens_per_call
    assert few.prompt_tokens == few.prompt_tokens_per_call * (few.plan.total_calls + few.eval_calls)
    long = dspy.Example(id="x", note="fever " * 2000, codes=["R50.9"]).with_inputs("note")
    assert estimate(program, [long], DEV, get_optimizer("bootstrap"), Settings(max_demos=1)).prompt_tokens_per_call > 1000


def test_metric_scores_code_f1_and_stops_past_the_budget():
    gold = dspy.Example(note="n", codes=["E11.319", "I10"]).with_inputs("note")
    assert CodeF1Metric()(gold, dspy.Prediction(codes=["I10"])) == pytest.approx(2 / 3)
    counter = CallCounter()
    metric = CodeF1Metric(counter=counter, budget=2)
    counter.calls = 2
    with pytest.raises(BudgetExhausted):
        metric(gold, dspy.Prediction(codes=["I10"]))


def test_gepa_feedback_names_missed_and_wrong_codes_and_the_stage():
    trace = [
        StageTrace("retrieve", proposed=["E11.319", "E11.9", "I10"]),
        StageTrace("rerank", kept=["E11.9", "I10"], dropped=[Dropped("E11.319", "retinopathy not documented")]),
    ]
    text = code_feedback(["E11.319", "I10", "E78.5"], ["E11.9", "I10"], trace)
    assert "missed E11.319 (category E11 right, wrong subcode: predicted E11.9); proposed by retrieve; " \
           "dropped by rerank: retinopathy not documented" in text
    assert "missed E78.5 (category E78 not predicted); no stage proposed it" in text
    assert "predicted E11.9 not in gold; proposed by retrieve; kept by rerank" in text
    assert "correct: I10" in text
    metric = CodeF1Metric(feedback=True)
    scored = metric(dspy.Example(codes=["I10"]), dspy.Prediction(codes=["I10"]), None, "assign", None)
    assert scored.score == 1.0 and scored.feedback == "all codes correct: I10"
