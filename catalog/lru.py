"""A bounded, thread-safe least-recently-used cache of read-only arrays."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["BoundedLRU"]

A = TypeVar("A", bound="np.ndarray[Any, Any]")


class BoundedLRU(Generic[A]):
    """At most ``size`` arrays, the least recently used dropped first. ``get`` returns the
    cached array or computes, freezes (read-only, since every caller shares it) and keeps
    it; two threads missing the same key at once may both compute it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Hashable, A] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], A]) -> A:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        value = compute()
        value.setflags(write=False)
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value
