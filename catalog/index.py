"""The vector index: FAISS for the whole catalog, exact search over a filtered subset."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from numpy.typing import NDArray

__all__ = ["FaissIndex", "Hit", "limit_threads"]

_threads = 0  # faiss's OpenMP threads in every thread that searches; 0: the library's default
_this_thread = threading.local()


def limit_threads(n: int) -> None:
    """Let faiss use at most ``n`` OpenMP threads in every thread that searches, not only in
    the calling one.

    OpenMP's thread count belongs to a thread: ``omp_set_num_threads`` (which threadpoolctl
    calls) sets it for the caller, and every other thread (a server's request threads) starts
    from the default, all cores. ``fvec_inner_products_by_idx`` opens a parallel region even
    for one query, so a request thread scoring 20,000 rows kept a second thread spinning at
    the region's barrier: 2.3 ms of wall time, 4.6 ms of CPU, the other core taken from the
    other worker. Each searching thread now sets its own count once."""
    global _threads
    _threads = max(0, int(n))


def _limit_this_thread() -> None:
    if _threads and getattr(_this_thread, "threads", 0) != _threads:
        faiss.omp_set_num_threads(_threads)
        _this_thread.threads = _threads


@dataclass(frozen=True, slots=True)
class Hit:
    """A product row and its cosine similarity to the query."""

    row: int
    score: float


class FaissIndex:
    """Inner product over L2-normalised vectors (cosine), with the vectors kept beside it.

    A filtered search does not ask FAISS with a selector: over a subset, a brute-force dot
    product is exact and, for the subset sizes conversations produce, as fast or faster.
    """

    def __init__(self, vectors: NDArray[np.float32], index: faiss.Index | None = None) -> None:
        self.vectors = vectors
        # The same memory as a plain array: indexing a memmap goes through its Python-level
        # __getitem__ and __array_finalize__ (30 us for 60 rows, a third of it overhead).
        self._plain = vectors.view(np.ndarray)
        self.dimensions = int(vectors.shape[1])
        if index is None:
            index = faiss.IndexFlatIP(self.dimensions)
            if len(vectors):
                index.add(np.ascontiguousarray(vectors))
        self.index = index

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self.vectors)
        faiss.write_index(self.index, str(folder / "index.faiss"))

    @classmethod
    def load(cls, folder: Path) -> FaissIndex:
        """Load a saved index; vectors are memory-mapped. Raises FileNotFoundError, ValueError."""
        vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        # IO_FLAG_MMAP still copies a flat index into private memory; IO_FLAG_MMAP_IFC maps
        # it from the file, so the workers share one page-cached copy.
        flags = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)
        index = faiss.read_index(str(folder / "index.faiss"), flags)
        if index.ntotal != len(vectors) or index.d != vectors.shape[1]:
            raise ValueError("index.faiss and vectors.npy disagree")
        return cls(vectors, index)

    def rows(self, rows: NDArray[np.int64]) -> NDArray[np.float32]:
        """A copy of the given rows' vectors."""
        out: NDArray[np.float32] = self._plain[rows]
        return out

    def scores(self, query: NDArray[np.float32], rows: NDArray[np.int64] | None = None
               ) -> NDArray[np.float32]:
        """Exact cosine of the query to every row (or to the given rows).

        faiss's ``fvec_inner_products_by_idx`` reads each row where it lies in the mapped
        file. Copying the rows out first (``vectors[rows] @ q``) doubled the memory traffic,
        and the traffic is the cost: over 44k x 384 on one core, 2,000 rows take 0.23 ms
        against 0.46 ms, every row 5.4 ms against 9.5 ms for numpy's matrix-vector product
        (docs/performance.md)."""
        _limit_this_thread()
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        vectors = self.vectors
        if q.shape[0] != vectors.shape[1]:
            raise ValueError(f"query has {q.shape[0]} dimensions, the index {vectors.shape[1]}")
        if rows is None:
            rows = np.arange(len(vectors), dtype=np.int64)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = np.empty(len(rows), dtype=np.float32)
        if len(rows) == 0:
            return out
        if not (vectors.flags.c_contiguous and vectors.dtype == np.float32):
            return np.asarray(np.asarray(vectors[rows], dtype=np.float32) @ q)
        if rows.min() < 0 or rows.max() >= len(vectors):
            raise IndexError("row out of range")
        faiss.fvec_inner_products_by_idx(  # type: ignore[attr-defined]
            faiss.swig_ptr(out), faiss.swig_ptr(q), faiss.swig_ptr(vectors),
            faiss.swig_ptr(rows), vectors.shape[1], 1, len(rows))
        return out

    def search(self, query: NDArray[np.float32], k: int,
               rows: NDArray[np.int64] | None = None) -> list[Hit]:
        """The k nearest products, over the whole index or only over ``rows``."""
        if k <= 0 or len(self) == 0:
            return []
        q = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if rows is None:
            _limit_this_thread()  # (over rows, scores() does it)
            scores, ids = self.index.search(q, min(k, len(self)))
            return [Hit(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        if len(rows) == 0:
            return []
        sims = self.scores(q, rows)
        top = np.argpartition(-sims, min(k, len(rows)) - 1)[:k] if len(rows) > k else \
            np.arange(len(rows))
        top = top[np.argsort(-sims[top], kind="stable")]
        return [Hit(int(rows[i]), float(sims[i])) for i in top]
