"""Language-model set-up from a model string: any LiteLLM model, an OpenAI-compatible server,
or the embedded local model."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.utils.exceptions import ContextWindowExceededError  # noqa: E402

from programs.errors import ModelError  # noqa: E402

LOCAL = "local"
NONE = "none"


def make_lm(
    model: str,
    api_base: str | None = None,
    *,
    api_key: str | None = None,
    temperature: float = 0.0,
    max_tokens: int = 1024,
    num_retries: int = 3,
    cache: bool = True,
) -> dspy.LM | None:
    """A `dspy.LM` for `model`; None for 'none' (every stage runs its rules, no LM is loaded).

    - 'local' or 'local:/path/model.gguf': the embedded llama.cpp model (programs.local).
    - 'openai/gpt-4o-mini', 'anthropic/...', 'ollama_chat/...', 'hosted_vllm/...': LiteLLM strings.
    - With `api_base` and no provider prefix, the model is served by an OpenAI-compatible server
      ('hosted_vllm/', which sends `max_tokens`, the limit llama.cpp and vLLM servers honour).
      'openai/...' with `api_base` needs `api_key` (or OPENAI_API_KEY) even for a local server.
    """
    if model == NONE:
        if api_base:
            raise ModelError("--api-base goes with a model; --model none runs the coding rules alone")
        return None
    if model == LOCAL or model.startswith(f"{LOCAL}:"):
        from programs.local import local_lm

        return local_lm(model.partition(":")[2] or None)
    if api_base and "/" not in model:
        model = f"hosted_vllm/{model}"
    extra = {key: value for key, value in (("api_base", api_base), ("api_key", api_key)) if value}
    return dspy.LM(
        model,
        temperature=temperature,
        max_tokens=max_tokens,
        num_retries=num_retries,
        cache=cache,
        **extra,
    )


def history_cost(lm: dspy.LM | None, start: int = 0) -> float:
    """The summed cost (USD) of the calls in `lm.history[start:]` that report one (0 with no LM)."""
    return 0.0 if lm is None else sum(entry.get("cost") or 0.0 for entry in lm.history[start:])


def model_error(exc: Exception, model: str) -> ModelError:
    """A one-line ModelError for an LM failure that outlasted DSPy's retries."""
    detail = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:300]
    if isinstance(exc, ContextWindowExceededError):
        return ModelError(
            f"the note does not fit the context window of {model} ({detail}); use a model with a longer "
            "context or split the note"
        )
    return ModelError(
        f"model {model} failed after retries: {detail}; check --model and --api-base, that the server "
        "is running, and the API key"
    )
