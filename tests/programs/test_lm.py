"""The LM set-up (programs.lm) against the scripted server on 127.0.0.1: DSPy's table of models
read once per model, with the same prices and entries as DSPy's own reading."""

from __future__ import annotations

import pytest
from dspy.clients import capabilities, costs

from programs.lm import make_lm


def ask(lm, n: int) -> None:
    lm(f"question {n}")


def test_a_served_model_is_looked_up_in_dspy_s_table_once(server, lm):
    ask(lm, 1)
    first = costs.model_info.cache_info()
    ask(lm, 2)
    ask(lm, 3)
    after = costs.model_info.cache_info()
    assert capabilities.model_info is costs.model_info
    assert after.misses == first.misses, "the model's entry was looked for again"
    assert after.hits >= first.hits + 4, "DSPy prices a call from its table twice; both readings are kept ones"


def test_a_priced_model_is_still_priced_at_every_call(server):
    lm = make_lm("openai/gpt-4o-mini", server.url, api_key="sk-local", cache=False, num_retries=0)
    ask(lm, 1)
    once = lm.spent
    ask(lm, 2)
    assert once > 0 and lm.spent == pytest.approx(2 * once)


@pytest.mark.parametrize("provider, model", [("openai", "gpt-4o-mini"), ("vllm", "scripted"), ("anthropic", "claude-sonnet-4-5")])
def test_a_kept_entry_is_dspy_s_own_and_a_copy(lm, provider, model):
    own = costs.model_info.__wrapped__(provider, model)
    kept = costs.model_info(provider, model)
    assert kept == own
    kept["input_cost_per_token"] = 1.0
    assert costs.model_info(provider, model) == own
