"""A bounded memo for the per-line hot path: `memo[key]` is one dict lookup once seen.

A mail log repeats the same few values on every line (host, program, mechanism, and the
same attackers' usernames), and `mlsd parse` must stay within 3x of a bare read loop
(see the parse benchmarks). A dict subclass with `__missing__` answers a repeat from C,
without the Python call that `functools.lru_cache` would add.
"""

from __future__ import annotations

from collections.abc import Callable, Sized
from typing import Generic, TypeVar

__all__ = ["Memo"]

K = TypeVar("K", bound=Sized)
V = TypeVar("V")


class Memo(dict[K, V], Generic[K, V]):
    """`fn(key)`, remembered for keys up to `max_key` long, at most `limit` of them.

    Both bounds matter because the keys come from attackers: a hostile log can make
    every value new (past `limit` the memo starts over) or huge (long keys are
    computed every time, never kept).
    """

    def __init__(self, fn: Callable[[K], V], *, limit: int = 8192, max_key: int = 128) -> None:
        super().__init__()
        self.fn = fn
        self.limit = limit
        self.max_key = max_key

    def __missing__(self, key: K) -> V:
        value = self.fn(key)
        if len(key) <= self.max_key:
            if len(self) >= self.limit:
                self.clear()
            self[key] = value
        return value
