"""A bounded, thread-safe least-recently-used cache of read-only arrays."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["BoundedLRU"]

V = TypeVar("V")


def _arrays(value: Any) -> list[np.ndarray[Any, Any]]:
    """The arrays a cached value holds: itself, or those in a tuple."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, tuple):
        return [a for item in value for a in _arrays(item)]
    return []


class BoundedLRU(Generic[V]):
    """At most ``size`` values (and, with ``max_bytes``, at most that many bytes of arrays),
    the least recently used dropped first. ``get`` returns the cached value or computes,
    freezes (its arrays read-only, since every caller shares them) and keeps it; two threads
    missing the same key at once may both compute it. A value is an array, a tuple holding
    arrays, or anything its callers never change."""

    def __init__(self, size: int, max_bytes: int | None = None) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, compute: Callable[[], V]) -> V:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit[0]
            self.misses += 1
        value = compute()
        arrays = _arrays(value)
        for a in arrays:
            a.setflags(write=False)
        size = sum(a.nbytes for a in arrays)
        if self.max_bytes is not None and size > self.max_bytes:
            return value  # never kept: it alone would empty the cache
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._items[key] = (value, size)
            self.nbytes += size
            while len(self._items) > self.size or (
                    self.max_bytes is not None and self.nbytes > self.max_bytes):
                self.nbytes -= self._items.popitem(last=False)[1][1]
        return value
