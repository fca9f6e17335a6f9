"""Failures counted per key (a user, an IP) over a sliding window of log time, bounded.

success_after_failures asks "how many failures for this user, or from this IP, in the last
`failure_window` minutes, and which IPs / users were they?" at each successful login. Both
keys are attacker-chosen, so a `FailureIndex` is an LRU map of keys, each holding its
newest failures exactly and the older ones as counted time slices, pruned by time as it
goes and capped per key and in total (mlsd.sentinel.caps says how and what it costs).

Times are POSIX seconds of the events' log time (floats), never the wall clock: the same
input gives the same counts, which is what makes alerts replayable.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import NamedTuple

MAX_NAME = 320
"""Longest username or IP kept as a key or in an entry: past a mailbox's 254 characters
nothing real is lost, and an attacker's 10 kB usernames cost no more than real ones."""


def name_key(name: str) -> str:
    """`name` as the indexes keep it (cut at MAX_NAME)."""
    return name if len(name) <= MAX_NAME else name[:MAX_NAME]


class Entry(NamedTuple):
    """One failure line: when, how many attempts it stands for, the other side's name."""

    time: float
    attempts: int
    other: str
    """The IP for a user's failures; the user tried for an IP's."""


class Slice:
    """Older failures of one key folded together: their count and time span, no detail."""

    __slots__ = ("attempts", "first", "index", "last")

    def __init__(self, index: int, entry: Entry) -> None:
        self.index = index
        self.attempts = entry.attempts
        self.first = entry.time
        self.last = entry.time


class Series:
    """One key's failures in the window: exact newest entries, then folded slices."""

    __slots__ = ("entries", "slices")

    def __init__(self) -> None:
        # Lists, not deques: an empty deque costs ~600 bytes, and an attacker makes one
        # Series per username (at most per_key entries and slices + 1 slices: pop(0) is cheap).
        self.entries: list[Entry] = []
        self.slices: list[Slice] = []

    def size(self) -> int:
        """Stored items, the unit the total cap counts."""
        return len(self.entries) + len(self.slices)

    def newest(self) -> float:
        """The latest failure time held (entries are appended in log order)."""
        if self.entries:
            return self.entries[-1].time
        return self.slices[-1].last if self.slices else float("-inf")


@dataclass(slots=True)
class Tally:
    """What a key's failures in the window add up to (lower bounds past the caps)."""

    count: int = 0
    first: float | None = None
    last: float | None = None
    others: Counter[str] = field(default_factory=Counter)
    """Attempts per IP (a user's tally) or per user (an IP's), from the exact entries."""
    folded: int = 0
    """Attempts counted from slices: their IPs or users are not known any more."""

    def _span(self, first: float, last: float) -> None:
        self.first = first if self.first is None else min(self.first, first)
        self.last = last if self.last is None else max(self.last, last)


class FailureIndex:
    """Failures per key within a window of `window` seconds, capped (see Caps)."""

    def __init__(
        self, *, window: float, max_keys: int, max_items: int, per_key: int, slices: int
    ) -> None:
        self.window = window
        self._max_keys = max_keys
        self._max_items = max_items
        self._per_key = max(1, per_key)
        self._slices = max(1, slices)
        self._keys: OrderedDict[str, Series] = OrderedDict()
        self._items = 0

    def __len__(self) -> int:
        return len(self._keys)

    @property
    def items(self) -> int:
        """Stored items across all keys (entries plus slices)."""
        return self._items

    def recount(self) -> int:
        """The items actually stored, counted key by key (tests check `items` against it)."""
        return sum(s.size() for s in self._keys.values())

    def largest_key(self) -> int:
        """The most items one key holds (for the bounded-memory tests)."""
        return max((s.size() for s in self._keys.values()), default=0)

    def add(self, key: str, entry: Entry) -> None:
        """Record a failure for `key`; prune it, fold its oldest, evict others past the caps."""
        series = self._keys.get(key)
        if series is None:
            series = self._keys[key] = Series()
        else:
            self._keys.move_to_end(key)
            self._prune(series, entry.time - self.window)
        series.entries.append(entry)
        self._items += 1
        if len(series.entries) > self._per_key:
            self._items -= 1
            self._fold(series, series.entries.pop(0))
        while len(self._keys) > self._max_keys or self._items > self._max_items:
            _, evicted = self._keys.popitem(last=False)
            self._items -= evicted.size()

    def tally(self, key: str, now: float) -> Tally:
        """The failures of `key` within (now - window, now]; does not touch the LRU order."""
        out = Tally()
        series = self._keys.get(name_key(key))
        if series is None:
            return out
        cutoff = now - self.window
        for piece in series.slices:
            # A slice that started before the window may hold expired failures: dropped
            # whole, so a count is never more than the truth.
            if piece.first > cutoff and piece.last <= now:
                out.count += piece.attempts
                out.folded += piece.attempts
                out._span(piece.first, piece.last)
        for entry in series.entries:
            if cutoff < entry.time <= now:
                out.count += entry.attempts
                out.others[entry.other] += entry.attempts
                out._span(entry.time, entry.time)
        return out

    def expire(self, now: float) -> None:
        """Forget the keys with nothing left in the window (least recently failed first)."""
        cutoff = now - self.window
        while self._keys:
            key, series = next(iter(self._keys.items()))
            if series.newest() > cutoff:
                break
            del self._keys[key]
            self._items -= series.size()

    def _fold(self, series: Series, entry: Entry) -> None:
        index = int(entry.time // (self.window / self._slices))
        if series.slices and series.slices[-1].index >= index:
            piece = series.slices[-1]
            piece.attempts += entry.attempts
            piece.first = min(piece.first, entry.time)
            piece.last = max(piece.last, entry.time)
            return
        series.slices.append(Slice(index, entry))
        self._items += 1
        # Log order keeps the slices within one window; a clock jumping back could not
        # make them grow past it.
        if len(series.slices) > self._slices + 1:
            series.slices.pop(0)
            self._items -= 1

    def _prune(self, series: Series, cutoff: float) -> None:
        while series.slices and series.slices[0].last <= cutoff:
            series.slices.pop(0)
            self._items -= 1
        while series.entries and series.entries[0].time <= cutoff:
            series.entries.pop(0)
            self._items -= 1


class Failures:
    """The two indexes success_after_failures reads: failures per user and per IP."""

    def __init__(
        self, *, window: float, max_keys: int, max_items: int, per_key: int, slices: int
    ) -> None:
        def index() -> FailureIndex:
            return FailureIndex(
                window=window,
                max_keys=max_keys,
                max_items=max_items,
                per_key=per_key,
                slices=slices,
            )

        self.by_user = index()
        self.by_ip = index()

    def set_window(self, window: float) -> None:
        """A new `failure_window` (reconfigure): counts follow it from now on."""
        self.by_user.window = self.by_ip.window = window

    def add(self, time: float, user: str, ip: str, attempts: int) -> None:
        """One failure line (a line naming no user, or no IP, counts on one side only)."""
        attempts = max(1, attempts)
        user, ip = name_key(user), name_key(ip)
        if user:
            self.by_user.add(user, Entry(time, attempts, ip))
        if ip:
            self.by_ip.add(ip, Entry(time, attempts, user))

    def expire(self, now: float) -> None:
        """Forget what fell out of the window on both sides."""
        self.by_user.expire(now)
        self.by_ip.expire(now)
