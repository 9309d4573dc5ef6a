"""How an LM stage's answer is decoded, and which path produced it.

A model that can be constrained answers every call under the call's schema (programs.answers),
so the answer always parses and a narrowed field can only hold what the call lists:

| mode          | for                                        | what the request carries                      |
|---------------|--------------------------------------------|-----------------------------------------------|
| `grammar`     | the embedded model (programs.local)        | the schema; the engine decodes its grammar     |
| `json-schema` | models DSPy/LiteLLM report as taking one   | `response_format` json_schema (portable)       |
| `llama.cpp`   | a llama.cpp server (`--api-base`)          | the GBNF grammar in the `grammar` field        |
| `vllm`        | a vLLM server (`--api-base`, vLLM >= 0.12) | the GBNF grammar as `structured_outputs`       |
| `off`         | any other model                            | DSPy's ChatAdapter, its JSON retry, then the lenient reader and the stage's rules |

The answers are read by JSONAdapter in every constrained mode. Each answer is recorded in the
stage's trace (`result.Answer`): its path, the values outside the call's narrowing, and for the
embedded model the tokens where the grammar overrode the model.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import dspy
from dspy.adapters.json_adapter import JSONAdapter
from dspy.utils.callback import BaseCallback

from programs.answers import Narrowing, answer_schema, longest_answer, portable
from programs.gbnf import to_gbnf
from programs.result import CONSTRAINED

AUTO, OFF = "auto", "off"
GRAMMAR, JSON_SCHEMA, LLAMA_CPP, VLLM = CONSTRAINED
MODES = (AUTO, *CONSTRAINED, OFF)
SERVER_MODES = (LLAMA_CPP, VLLM)
ANSWER_FORMAT = "coding_answer"
CHAT_END = "[[ ## completed ## ]]"
_CAPABILITIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_READING = threading.Lock()


def decoding_of(lm) -> str:
    """The decoding of `lm`: the mode `make_lm` set on it, else `grammar` for the embedded
    model, `json-schema` for a model DSPy reports as taking one, `off` otherwise."""
    mode = getattr(lm, "decoding", AUTO)
    if mode != AUTO:
        return mode
    if getattr(getattr(lm, "engine", None), "decodes_answer_schemas", False):
        return GRAMMAR
    return model_capabilities(lm)[0]


def model_capabilities(lm) -> tuple[str, frozenset[str]]:
    """(`json-schema` or `off`, the request parameters it takes) as DSPy's table of models
    reports them for `lm`, read once per LM (an LM that cannot be a dictionary key, every
    call): a model the table does not name is looked for entry by entry, about 2 ms of lock-
    holding time each time, twice a call. The first reading also loads the table (about 30
    ms): the first calls of a batch, made at once, wait for one reading instead of each
    making its own."""
    try:
        return _CAPABILITIES[lm]
    except KeyError:
        with _READING:
            if lm not in _CAPABILITIES:
                _CAPABILITIES[lm] = _read_capabilities(lm)
            return _CAPABILITIES[lm]
    except TypeError:
        return _read_capabilities(lm)


def _read_capabilities(lm) -> tuple[str, frozenset[str]]:
    try:
        mode = JSON_SCHEMA if lm.supports_response_schema else OFF
    except Exception:  # a model DSPy knows nothing about
        mode = OFF
    try:
        params = frozenset(lm.supported_params)
    except Exception:  # a model DSPy knows nothing about
        params = frozenset()
    return mode, params


class ConstrainedAdapter(JSONAdapter):
    """DSPy's JSONAdapter sending one call's answer schema the way `mode` says."""

    def __init__(self, schema: dict, mode: str):
        super().__init__(use_native_function_calling=False)
        self.schema = schema
        self.mode = mode

    def _prepare_response_format(self, lm, lm_kwargs, signature):
        if self.mode == GRAMMAR:
            lm_kwargs["response_format"] = answer_format(self.schema)
            lm_kwargs["max_tokens"] = longest_answer(self.schema)
        elif self.mode == JSON_SCHEMA:
            lm_kwargs["response_format"] = answer_format(portable(self.schema))
        elif self.mode == LLAMA_CPP:
            lm_kwargs["extra_body"] = {"grammar": to_gbnf(self.schema)}
        elif self.mode == VLLM:
            lm_kwargs["extra_body"] = {"structured_outputs": {"grammar": to_gbnf(self.schema)}}


def answer_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": ANSWER_FORMAT, "schema": schema, "strict": True}}


def answer_schema_of(response_format) -> dict | None:
    """The answer schema a request carries (lm15 flattens `json_schema` into the format), or None
    for any other response format (DSPy's own JSON mode)."""
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return None
    inner = response_format.get("json_schema") or response_format
    return inner.get("schema") if inner.get("name") == ANSWER_FORMAT else None


@dataclass
class Decoded:
    """One call's decoding, filled while it runs: parse failures DSPy's adapters met, and the
    tokens the embedded model's grammar overrode (programs.local adds them)."""

    parse_failures: int = 0
    overrides: int = 0


_current: contextvars.ContextVar[Decoded | None] = contextvars.ContextVar("decoded", default=None)


def note_overrides(count: int) -> None:
    """Called by an engine after a constrained call: the tokens its grammar overrode."""
    decoded = _current.get()
    if decoded is not None:
        decoded.overrides += count


class _ParseWatch(BaseCallback):
    def __init__(self, decoded: Decoded):
        self.decoded = decoded

    def on_adapter_parse_end(self, call_id, outputs, exception=None):
        if exception is not None:
            self.decoded.parse_failures += 1


@contextmanager
def decoding(predictor: dspy.Predict, narrowed: Mapping[str, Narrowing] | None) -> Iterator[tuple[str, Decoded, dict]]:
    """Run one call of `predictor` inside: under its answer schema when the configured LM can be
    constrained, else with ChatAdapter's end marker as a stop. Yields (mode, what the call met,
    the call's `config` for the predictor)."""
    lm = dspy.settings.lm
    mode = decoding_of(lm) if lm is not None else OFF
    decoded = Decoded()
    settings: dict = {"callbacks": [*dspy.settings.callbacks, _ParseWatch(decoded)]}
    config: dict = {}
    if mode in CONSTRAINED:
        settings["adapter"] = ConstrainedAdapter(answer_schema(predictor.signature, narrowed), mode)
    elif lm is not None and "stop" in model_capabilities(lm)[1]:
        stop = lm.kwargs.get("stop") or []
        config["stop"] = [*([stop] if isinstance(stop, str) else stop), CHAT_END]
    token = _current.set(decoded)
    try:
        with dspy.context(**settings):
            yield mode, decoded, config
    finally:
        _current.reset(token)
