"""What the report may ask of a database of events: aggregates over a time range.

The report role never imports the store (the import rule); when the report reads from
SQL, app opens the store and hands the report an object with this shape (the SQLite
store's is `mlsd.store.queries.SqlFigures`; the fleet's PostgreSQL can offer the same).
Ranges are half-open [start, end) in epoch seconds. "Failures" are the sum of the
`attempts` column, "rows" the rows, as `mlsd.report.tally` counts them; top lists are most
failures first, ties by value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, tzinfo
from enum import Enum
from typing import Protocol


class Key(Enum):
    """What a top list or a distinct count is by (the value is the column's name)."""

    IP = "ip"
    USER = "user"
    COUNTRY = "country_code"
    ASN = "asn"


@dataclass(frozen=True, slots=True)
class Totals:
    """Rows and failed attempts in a range."""

    rows: int
    failures: int


@dataclass(frozen=True, slots=True)
class NewIps:
    """A range's IPs split by whether they were seen in an earlier range."""

    new: int
    new_failures: int
    seen: int
    seen_failures: int
    top: list[tuple[str, int]]
    """The new IPs with the most failures, most first, ties by IP."""


class Figures(Protocol):
    """Aggregates over time ranges of one database of events."""

    def totals(self, start: int, end: int) -> Totals:
        """Rows and failures in the range."""
        ...

    def per_hour(self, start: int, end: int) -> list[int]:
        """Failures per hour since `start` (23 to 25 buckets for a local day)."""
        ...

    def top(self, key: Key, start: int, end: int, n: int) -> list[tuple[str, int]]:
        """The `n` values of `key` with the most failures."""
        ...

    def distinct(self, key: Key, start: int, end: int) -> int:
        """How many different values of `key`."""
        ...

    def per_day(self, start: int, end: int, tz: tzinfo) -> dict[date, Totals]:
        """Rows and failures per day in `tz` (days without rows absent)."""
        ...

    def new_ips(self, start: int, end: int, since: int, n: int) -> NewIps:
        """IPs of [start, end) not seen in [since, start)."""
        ...
