"""A dict with a size cap that forgets the least recently used entry (bounded memory for
anything keyed by a name that comes from the wire: frame_ids, TF child frames).

A robot has a handful of camera frames and a few hundred TF frames; a misconfigured or
hostile publisher can send a new name with every message. Each per-name structure in the
node is therefore an `LruDict`: lookups refresh an entry, inserts beyond `cap` evict the
oldest, and `evicted` counts evictions so the owner can warn (throttled) and report them.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Generic, Iterator, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruDict(Generic[K, V]):
    def __init__(self, cap: int):
        if cap < 1:
            raise ValueError(f"LruDict cap must be >= 1, got {cap}")
        self.cap = cap
        self.evicted = 0  # entries forgotten because the cap was reached
        self._d: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: K) -> bool:
        return key in self._d

    def __iter__(self) -> Iterator[K]:
        return iter(self._d)

    def values(self):
        return self._d.values()

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value (marked as just used) or `default`."""
        if key not in self._d:
            return default
        self._d.move_to_end(key)
        return self._d[key]

    def put(self, key: K, value: V) -> list[tuple[K, V]]:
        """Insert or refresh `key`; returns the (key, value) pairs evicted to stay within `cap`."""
        self._d[key] = value
        self._d.move_to_end(key)
        out = []
        while len(self._d) > self.cap:
            out.append(self._d.popitem(last=False))
        self.evicted += len(out)
        return out

    def clear(self) -> None:
        self._d.clear()

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._d.pop(key, default)
