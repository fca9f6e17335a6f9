"""What a day's report shows, as data: every figure of every section, already ranked and cut.

Two producers fill it, and a test holds them equal on the corpus days: the event store's
SQL (`mlsd.store.dayquery`, what the report reads) and a count of the CSV's rows in Python
(`mlsd.report.tally`, the fallback while the store is not caught up, and the oracle).
`mlsd.report.sections` only renders it. Only top lists cross into Python from SQL, so a
report's memory no longer grows with the day's distinct names and addresses.

Every list is ordered by its value, largest first, ties by key (the key's code points,
which is also SQLite's byte order of UTF-8); `rest` and `rest_value` say what the cut
left out ("… and N more (X failures)").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Final, Generic, Protocol, TypeVar

T = TypeVar("T")

MANY_IPS: Final = 3
"""A username tried from at least this many IPs in a day is listed as a distributed attack."""


def network(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) an IP belongs to; the text itself if it is not an IP.

    By hand rather than with `ipaddress.ip_network`, which costs ~20 µs an address (a busy
    day has tens of thousands): a.b.c.d → a.b.c.0/24, and for IPv6 the first three hextets,
    written as RFC 5952 does (the five zero hextets after them are always the run `::` takes).
    """
    if ":" not in ip:
        head, _, last = ip.rpartition(".")
        if head.count(".") == 2 and (head + last).replace(".", "").isdigit():
            return f"{head}.0/24"
        return ip
    try:
        packed = ipaddress.IPv6Address(ip).packed
    except ValueError:
        return ip
    hextets = [packed[k] << 8 | packed[k + 1] for k in (0, 2, 4)]
    while hextets and hextets[-1] == 0:
        hextets.pop()
    return ":".join(f"{h:x}" for h in hextets) + "::/48"


@dataclass(frozen=True, slots=True)
class Ranked(Generic[T]):
    """A top list: its entries, and how many entries and how much value were cut."""

    top: list[T]
    rest: int = 0
    rest_value: int = 0


@dataclass(frozen=True, slots=True)
class Pair:
    """A (username, IP) pair: its failures, and the name and country most of them had."""

    user: str
    ip: str
    failures: int
    hostname: str
    country: str


@dataclass(frozen=True, slots=True)
class Address:
    """An attacking IP: failures, distinct usernames, its country and ASN (those of most
    of its failures), when it was first and last seen (epoch seconds) and whether it was
    seen in the days before (None: no day before is known)."""

    ip: str
    failures: int
    users: int
    country: str
    asn: str
    first: int
    last: int
    seen_before: bool | None


@dataclass(frozen=True, slots=True)
class Group:
    """A value counted with the IPs it came from: a network, country, ASN, owner or user.
    `label` is an ASN's organisation (empty elsewhere)."""

    key: str
    failures: int
    ips: int
    label: str = ""


@dataclass(frozen=True, slots=True)
class Spread:
    """A username tried from MANY_IPS or more IPs in the day."""

    user: str
    ips: int
    failures: int
    countries: int


@dataclass(frozen=True, slots=True)
class NewAddress:
    """An IP not seen in the days before, with its country and ASN."""

    ip: str
    failures: int
    country: str
    asn: str


@dataclass(frozen=True, slots=True)
class Newcomers:
    """The day's IPs split by whether the known days before saw them."""

    known_days: int
    """How many of the days before are known (0: the split cannot be made)."""
    new: int
    new_failures: int
    seen: int
    seen_failures: int
    top: Ranked[NewAddress]


@dataclass(frozen=True, slots=True)
class DayFigures:
    """Every figure of a day's report, for `mlsd.report.sections` to render."""

    events: int
    failures: int
    ips: int
    users: int
    histogram: list[int]
    """Failures per hour from the window's start."""
    services: Ranked[tuple[str, int]]
    rdns: Ranked[tuple[str, int]]
    pairs: Ranked[Pair]
    addresses: Ranked[Address]
    networks: Ranked[Group]
    usernames: Ranked[Group]
    spread: Ranked[Spread]
    countries: Ranked[Group]
    asns: Ranked[Group]
    orgs: Ranked[Group]
    newcomers: Newcomers


@dataclass(frozen=True, slots=True)
class PastDay:
    """One of the days before the report's: its rows and failed attempts."""

    rows: int
    failures: int


class DaySource(Protocol):
    """A database of events the report can read its day from (the SQLite store).

    It must be picklable: the daemon builds reports in a child process."""

    def day(
        self, start: datetime, end: datetime, since: datetime, top: int, known_days: int
    ) -> DayFigures:
        """The figures of [start, end); `known_days` of [since, start) decide which IPs are
        new (0: no day before is known)."""
        ...

    def past(
        self, days: list[tuple[date, datetime, datetime]], tz: tzinfo
    ) -> dict[date, PastDay | None]:
        """Each (day, start, end) counted; None for a day before the first row."""
        ...
