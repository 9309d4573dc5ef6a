"""Greedy decoding under a GBNF grammar for llama-cpp-python, checking the model's own choice
first (needs the `local` extra).

llama-cpp-python puts llama.cpp's grammar sampler before the greedy one, so every generated
token tests all 262,144 tokens of Gemma's vocabulary against the grammar: measured here about
25 ms a token, as much again as generating it. llama.cpp's own sampling (common/sampling.cpp)
tests the greedy token first and filters the whole vocabulary only when the grammar refuses it;
`GrammarGreedy` does the same, so a model that follows the format pays almost nothing, and it
counts the tokens where the grammar overrode the model.
"""

from __future__ import annotations

import ctypes
import math

import llama_cpp
import numpy as np

TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


class GrammarError(ValueError):
    """llama.cpp refused the grammar text."""


class GrammarGreedy:
    """A llama.cpp sampler chain: the grammar (greedy token checked first), then greedy.

    Used where llama-cpp-python expects its `LlamaSampler` (`sample(ctx, idx)`); `overrides`
    counts the tokens the grammar changed."""

    def __init__(self, vocab, grammar: str, root: str = "root"):
        self.grammar = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), root.encode("utf-8"))
        if not self.grammar:
            raise GrammarError("llama.cpp could not parse the answer grammar")
        self.overrides = 0
        self._one = llama_cpp.llama_token_data()
        self._single = llama_cpp.llama_token_data_array(data=ctypes.pointer(self._one), size=1, selected=-1, sorted=False)
        self._callbacks = (
            llama_cpp.llama_sampler_i_apply(self._apply),
            llama_cpp.llama_sampler_i_accept(self._accept),
        )
        iface = llama_cpp.llama_sampler_i()
        iface.name = llama_cpp.llama_sampler_i_name(0)
        iface.apply, iface.accept = self._callbacks
        iface.reset = llama_cpp.llama_sampler_i_reset(0)
        iface.clone = llama_cpp.llama_sampler_i_clone(0)
        iface.free = llama_cpp.llama_sampler_i_free(0)
        self._iface = iface
        self._check = llama_cpp.llama_sampler(iface=ctypes.pointer(iface), ctx=None)
        self.chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(self.chain, ctypes.pointer(self._check))
        llama_cpp.llama_sampler_chain_add(self.chain, llama_cpp.llama_sampler_init_greedy())

    def _apply(self, _sampler, candidates) -> None:
        array = candidates.contents
        raw = ctypes.cast(array.data, ctypes.POINTER(ctypes.c_uint8))
        data = np.ctypeslib.as_array(raw, shape=(array.size * TOKEN_DATA.itemsize,)).view(TOKEN_DATA)
        best = int(np.argmax(data["logit"]))
        self._one.id, self._one.logit, self._one.p = int(data["id"][best]), float(data["logit"][best]), 0.0
        self._single.size, self._single.selected = 1, -1
        llama_cpp.llama_sampler_apply(self.grammar, ctypes.byref(self._single))
        if math.isinf(self._one.logit):
            self.overrides += 1
            llama_cpp.llama_sampler_apply(self.grammar, candidates)

    def _accept(self, _sampler, token) -> None:
        llama_cpp.llama_sampler_accept(self.grammar, token)

    def sample(self, ctx, idx: int = -1) -> int:
        return llama_cpp.llama_sampler_sample(self.chain, ctx.ctx, idx)

    def close(self) -> None:
        if self.chain:
            llama_cpp.llama_sampler_chain_remove(self.chain, 0)  # ours: llama.cpp must not free it
            llama_cpp.llama_sampler_free(self.chain)
            llama_cpp.llama_sampler_free(self.grammar)
            self.chain = self.grammar = None

    def __del__(self) -> None:
        self.close()


class GuidedLlama(llama_cpp.Llama):
    """`llama_cpp.Llama` whose greedy calls with a grammar decode through `sampler_class`
    (GrammarGreedy); the sampler of the last such call is `guided` (None after a call without a
    grammar)."""

    guided: GrammarGreedy | None = None
    sampler_class = GrammarGreedy

    def _init_sampler(self, *args, grammar=None, temp: float = 0.8, **kwargs):
        if grammar is None or temp > 0:
            self.guided = None
            return super()._init_sampler(*args, grammar=grammar, temp=temp, **kwargs)
        self.guided = self.sampler_class(self._model.vocab, grammar._grammar, grammar._root)
        return self.guided
