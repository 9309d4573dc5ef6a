"""Language-model set-up from a model string: any LiteLLM model, an OpenAI-compatible server,
or the embedded local model.

A model server's answer is used only when it is one: an empty answer (no choices, null or blank
content) or a reply that is not a chat completion (not JSON, cut off) is a failed request,
retried with backoff like DSPy's own retries of HTTP and network failures, and never stored in
DSPy's cache, whose key also names the server (`AnswerCache`)."""

from __future__ import annotations

import copy
import functools
import os
import threading
import time
from dataclasses import dataclass

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.utils.exceptions import (  # noqa: E402
    ContextWindowExceededError,
    LMAuthError,
    LMError,
    LMInvalidRequestError,
    LMNotConfiguredError,
    LMProviderError,
    LMRateLimitError,
    LMServerError,
    LMTimeoutError,
    LMTransportError,
    LMUnexpectedError,
)

from programs.decoding import AUTO, GRAMMAR, MODES, OFF, SERVER_MODES, model_capabilities  # noqa: E402
from programs.errors import ModelError, NoteError  # noqa: E402

LOCAL = "local"
NONE = "none"
SERVER_KEYS = ("api_base", "base_url")


class EmptyAnswer(LMProviderError):
    """The model answered with nothing: no choices, or null or blank content."""

    default_code = "empty_answer"


def make_lm(
    model: str,
    api_base: str | None = None,
    *,
    api_key: str | None = None,
    timeout: float | None = None,
    temperature: float = 0.0,
    max_tokens: int = 1024,
    num_retries: int = 3,
    cache: bool = True,
    decoding: str = AUTO,
) -> dspy.LM | None:
    """A `dspy.LM` for `model`; None for 'none' (every stage runs its rules, no LM is loaded).

    - 'local' or 'local:/path/model.gguf': the embedded llama.cpp model (programs.local).
    - 'openai/gpt-4o-mini', 'anthropic/...', 'ollama_chat/...', 'hosted_vllm/...': LiteLLM strings.
    - With `api_base` and no provider prefix, the model is served by an OpenAI-compatible server
      ('hosted_vllm/', which sends `max_tokens`, the limit llama.cpp and vLLM servers honour).
      'openai/...' with `api_base` needs `api_key` (or OPENAI_API_KEY) even for a local server.
    `timeout` bounds the wait for one answer of a server (seconds); `num_retries` is the number
    of retries of a failed, empty or unreadable answer. `decoding` is how answers are constrained
    (programs.decoding; `decoding_problem` says which go with which model).
    """
    if not model or not model.strip():
        raise ModelError("no model given: pass --model none, local, or a model string such as openai/gpt-4o-mini")
    problem = decoding_problem(model, api_base, decoding)
    if problem:
        raise ModelError(problem)
    if model == NONE:
        if api_base:
            raise ModelError("--api-base goes with a model; --model none runs the coding rules alone")
        return None
    if model == LOCAL or model.startswith(f"{LOCAL}:"):
        from programs.local import local_lm

        lm = local_lm(model.partition(":")[2] or None)
        lm.decoding = decoding
        return lm
    if api_base and "/" not in model:
        model = f"hosted_vllm/{model}"
    extra = {key: value for key, value in (("api_base", api_base), ("api_key", api_key), ("timeout", timeout)) if value}
    use_answer_cache()
    remember_model_metadata()
    lm = CheckedLM(
        model,
        temperature=temperature,
        max_tokens=max_tokens,
        num_retries=num_retries,
        cache=cache,
        **extra,
    )
    lm.decoding = decoding
    model_capabilities(lm)  # read now, while a batch waits for its first notes' problems, not by its first calls
    return lm


def decoding_problem(model: str, api_base: str | None, decoding: str) -> str | None:
    """Why `decoding` cannot go with `model` (and `api_base`), or None: the embedded model
    decodes its own grammar (or nothing: 'off'), the server kinds need the server's URL, and a
    server model cannot run the embedded grammar."""
    if decoding not in MODES:
        return f"unknown decoding {decoding!r}: use one of {', '.join(MODES)}"
    local = model == LOCAL or model.startswith(f"{LOCAL}:")
    if model == NONE and decoding != AUTO:
        return "--decoding goes with a model; --model none runs the coding rules alone"
    if local and decoding not in (AUTO, GRAMMAR, OFF):
        return f"--decoding {decoding} is for model servers; the embedded model decodes under its grammar (auto) or off"
    if not local and decoding == GRAMMAR:
        return "--decoding grammar is the embedded model's; for a server give llama.cpp, vllm or json-schema"
    if decoding in SERVER_MODES and not api_base:
        return f"--decoding {decoding} names the server at --api-base: give --api-base http://HOST:PORT/v1"
    return None


@dataclass(frozen=True)
class ModelSpec:
    """What `make_lm` needs, as a value another process (a Ray worker) can make its LM from."""

    model: str
    api_base: str | None = None
    api_key: str | None = None
    timeout: float | None = None
    retries: int = 3
    decoding: str = AUTO

    @property
    def local(self) -> bool:
        """The embedded model, loaded into the process that codes (not worth loading elsewhere)."""
        return self.model == LOCAL or self.model.startswith(f"{LOCAL}:")

    def make(self) -> dspy.LM | None:
        return make_lm(self.model, self.api_base, api_key=self.api_key, timeout=self.timeout, num_retries=self.retries,
                       decoding=self.decoding)


class CheckedLM(dspy.LM):
    """A `dspy.LM` whose empty answers and unreadable replies are failed requests: retried
    (`num_retries` times, backoff 1, 2, 4 ... s) and then raised as LMErrors. `spent` sums the
    cost (USD) of its calls that report one."""

    spent = 0.0
    _spending = threading.Lock()

    def update_history(self, entry):
        super().update_history(entry)
        with self._spending:
            self.spent += entry.get("cost") or 0.0

    def __call__(self, prompt=None, *, messages=None, **kwargs):
        for attempt in range(self.num_retries + 1):
            try:
                outputs = super().__call__(prompt, messages=messages, **kwargs)
            except (LMProviderError, LMUnexpectedError) as exc:
                if not unreadable(exc):
                    raise
                failure: LMError = exc
            else:
                if not isinstance(outputs, list) or answered(outputs):
                    return outputs
                failure = EmptyAnswer("the model returned an empty answer", model=self.model)
            if attempt < self.num_retries:
                time.sleep(backoff(attempt))
        raise failure


def backoff(attempt: int) -> float:
    """Seconds before retry number `attempt` + 1 (DSPy's schedule for failed requests)."""
    return float(min(2**attempt, 60))


def unreadable(exc: LMError) -> bool:
    """A reply that came back (HTTP 200, or no status) but is not a chat completion."""
    return type(exc) in (LMProviderError, LMUnexpectedError) and exc.status in (None, 200)


def answered(outputs: list) -> bool:
    """Whether an LM call's outputs hold an answer: at least one, each with text or tool calls."""

    def holds(output) -> bool:
        if isinstance(output, str):
            return bool(output.strip())
        if isinstance(output, dict):
            return bool(str(output.get("text") or "").strip() or output.get("tool_calls"))
        return True

    return bool(outputs) and all(holds(output) for output in outputs)


def cached_outputs(record) -> list:
    """The outputs a DSPy cache record holds: a native record's, or a LiteLLM response's choices."""
    if isinstance(record, dict) and "outputs" in record:
        return list(record["outputs"] or [])
    return [
        {"text": getattr(choice.message, "content", None), "tool_calls": getattr(choice.message, "tool_calls", None)}
        for choice in getattr(record, "choices", None) or []
    ]


class AnswerCache:
    """DSPy's response cache with the server in the key (DSPy leaves api_base out, so another
    server's answer was served) and without empty answers (a retry must reach the server)."""

    def __init__(self, inner):
        self.inner = inner

    def get(self, request, ignored_args_for_cache_key=None):
        return self.inner.get(request, server_keyed(ignored_args_for_cache_key))

    def put(self, request, value, ignored_args_for_cache_key=None, enable_memory_cache=True):
        if answered(cached_outputs(value)):
            self.inner.put(request, value, server_keyed(ignored_args_for_cache_key), enable_memory_cache)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def server_keyed(ignored: list[str] | None) -> list[str]:
    return [name for name in ignored or [] if name not in SERVER_KEYS]


def use_answer_cache() -> None:
    """Wraps DSPy's current cache in an AnswerCache (once)."""
    if not isinstance(dspy.cache, AnswerCache):
        dspy.cache = AnswerCache(dspy.cache)


def remember_model_metadata() -> None:
    """Has DSPy read a model's entry in its table of models once per process, not at every call
    (once).

    DSPy prices each call from the entry of its model in a table of about 4,500 models, twice a
    call, and looks for a model the table does not name (a `hosted_vllm/` server's, for one)
    entry by entry: about 2 ms of the client's CPU a call, more than half of DSPy's own. Threads
    waiting on a server queue behind that work for the interpreter's lock. The table does not
    change once loaded, so each entry read is kept, and a copy handed out as DSPy does."""
    from dspy.clients import capabilities, costs

    if hasattr(costs.model_info, "cache_info"):
        return
    read = functools.lru_cache(maxsize=256)(costs.model_info)

    @functools.wraps(costs.model_info)
    def model_info(provider, model, *, namespaces=None):
        return copy.deepcopy(read(provider, model, namespaces=namespaces))

    model_info.cache_info = read.cache_info
    costs.model_info = capabilities.model_info = model_info


def spent(lm: dspy.LM | None) -> float:
    """The summed cost (USD) of `lm`'s calls so far that report one (0 with no LM, or a model
    that reports none, such as the local one)."""
    return getattr(lm, "spent", 0.0)


def model_error(exc: Exception, lm: dspy.BaseLM) -> ModelError | NoteError:
    """A one-line error for an LM failure that outlasted the retries: a NoteError when the note
    is too long for the model, else a ModelError."""
    if isinstance(exc, ContextWindowExceededError):
        return NoteError(
            f"the note does not fit the context window of {lm.model} ({detail(exc) or 'too long'}); use a model with a longer "
            "context or split the note"
        )
    retries = getattr(lm, "num_retries", 0)
    return ModelError(f"model {lm.model} failed after {retries} retr{'y' if retries == 1 else 'ies'}: {failure(exc, lm)}")


def failure(exc: Exception, lm: dspy.BaseLM) -> str:
    """What went wrong, and what to check, in a few words."""
    status = getattr(exc, "status", None)
    said = detail(exc)
    http = f"HTTP {status}" + (": " if said else "") if status else ""
    if isinstance(exc, EmptyAnswer):
        return "it returned empty answers (no choices or no content); check the server's logs and the model"
    if isinstance(exc, (LMAuthError, LMNotConfiguredError)):
        return f"{http}{said}; check --api-key (or $ICD_API_KEY)"
    if isinstance(exc, LMRateLimitError):
        return f"rate limited ({http}{said}); wait, or lower --threads"
    if isinstance(exc, LMTimeoutError) or (isinstance(exc, LMTransportError) and "timed out" in said):
        waited = lm.kwargs.get("timeout") if hasattr(lm, "kwargs") else None
        within = f" within {waited:g} s" if isinstance(waited, (int, float)) else ""
        return f"no answer{within} ({said}); raise --timeout, or check the server"
    if isinstance(exc, LMTransportError):
        return f"cannot reach the server ({said}); check --api-base and that the server is running"
    if isinstance(exc, LMServerError):
        return f"server error ({http}{said}); check the server's logs"
    if isinstance(exc, LMInvalidRequestError):
        return f"the request was refused ({http}{said}); check --model"
    if isinstance(exc, LMError) and unreadable(exc):
        return f"its reply was not a chat completion ({said}); is --api-base an OpenAI-compatible /v1 URL?"
    return f"{exc.__class__.__name__}: {said or 'no detail'}; check --model and --api-base"


def detail(exc: Exception) -> str:
    """The first clause of an error's own message, without its advice or any echo of the reply."""
    text = str(getattr(exc, "message", None) if isinstance(exc, LMError) else exc)
    text = text.split("To fix:")[0].split(" Body starts:")[0].strip()
    line = (text.splitlines() or [""])[0].split("; ")[0].rstrip(". ")
    return line[:200]
