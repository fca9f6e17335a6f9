"""A day's report figures (`mlsd.dayfigures`) computed by SQLite from the event store.

The day's rows are folded once, by the store's time index, into a temporary table of
distinct (user, ip, hostname, reverse DNS, country, ASN, owner, service) with their
failures, rows, first row id and first and last time — by inserting each row into that table
keyed on those columns (an upsert), which costs less than sorting the day for a GROUP BY
(0.5 s instead of 0.7 s for 500 k rows, 1.0 s instead of 2.3 s for 1 M distinct).
Per-address and per-user totals are then grouped once each (`temp.ips`, `temp.users`), and
every figure is an aggregate of these tables. Which addresses the 30 days before saw is a
lookup per address in the (`ip`, `time`) index. Only the top lists and a handful of counts
come back into Python: the memory of a report is SQLite's page cache and temporary b-trees
(on disk when large), whatever the number of distinct names and addresses an attacker sends.
Rows are selected by time, not by their place in the file, so a far-future stamp hides
nothing.

The rules the CSV's count (`mlsd.report.tally`) follows are kept exactly, and a test holds
the two equal: ties by key; an IP's country and ASN are those of most of its failures, ties
to the first seen (the lowest row id); a (user, IP) pair shows a real hostname when any of
its rows had one, else "unknown", else blank.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any, Final

from mlsd.dayfigures import (
    MANY_IPS,
    Address,
    DayFigures,
    Group,
    NewAddress,
    Newcomers,
    Pair,
    PastDay,
    Ranked,
    Spread,
    network,
)
from mlsd.store import queries

_ASN: Final = "CASE WHEN asn IS NULL THEN 'N/A' ELSE 'AS' || asn END"
"""The ASN as the CSV wrote it (`mlsd.store.rowmap.asn_text`), so it sorts as text."""

_DAY: Final = """
CREATE TEMP TABLE day (
    user TEXT NOT NULL, ip TEXT NOT NULL, hostname TEXT NOT NULL, rdns TEXT NOT NULL,
    cc TEXT NOT NULL, asn TEXT NOT NULL, aso TEXT NOT NULL, service TEXT NOT NULL,
    f INTEGER NOT NULL, n INTEGER NOT NULL, m INTEGER NOT NULL,
    t0 INTEGER NOT NULL, t1 INTEGER NOT NULL,
    PRIMARY KEY (user, ip, hostname, rdns, cc, asn, aso, service)
)"""
"""Keyed by user first: grouping by user, or by user and IP, then reads the key in order."""
_FILL: Final = f"""
INSERT INTO temp.day
SELECT user, ip, hostname, reverse_dns_status, country_code, {_ASN}, aso, service,
       attempts, 1, id, time, time
FROM main.mlsd_events WHERE time >= :start AND time < :end
ON CONFLICT (user, ip, hostname, rdns, cc, asn, aso, service) DO UPDATE SET
    f = f + excluded.f, n = n + 1, m = min(m, excluded.m),
    t0 = min(t0, excluded.t0), t1 = max(t1, excluded.t1)
"""  # noqa: S608 - constants only; values are parameters
_IPS: Final = """
CREATE TEMP TABLE ips AS
SELECT ip, sum(f) AS f, count(DISTINCT user) AS users, min(t0) AS t0, max(t1) AS t1
FROM temp.day GROUP BY ip
"""
_USERS: Final = """
CREATE TEMP TABLE users AS
SELECT user, sum(f) AS f, count(DISTINCT ip) AS ips FROM temp.day GROUP BY user
"""
_SEEN: Final = """
CREATE TEMP TABLE seen AS
SELECT ip FROM temp.ips
WHERE EXISTS (
    SELECT 1 FROM main.mlsd_events AS e WHERE e.ip = ips.ip AND e.time >= :since AND e.time < :start
)
"""
_SEEN_SCAN: Final = """
CREATE TEMP TABLE seen AS
SELECT DISTINCT ip FROM main.mlsd_events
WHERE time >= :since AND time < :start AND ip IN (SELECT ip FROM temp.ips)
"""
"""For a store not yet upgraded to the (`ip`, `time`) index (read by `mlsd report` before
the daemon's next start): each address looked up would scan its whole table."""


@dataclass(frozen=True, slots=True)
class StoreDays:
    """`mlsd.dayfigures.DaySource` on the SQLite store at `path` (a connection per call,
    read-only: it never blocks the daemon's writer)."""

    path: Path

    def day(
        self, start: datetime, end: datetime, since: datetime, top: int, known_days: int
    ) -> DayFigures:
        """The figures of [start, end); `known_days` of [since, start) decide which IPs are
        new (0: none is known, the split is not made)."""
        db = queries.connect(self.path)
        try:
            return day_figures(
                db, _second(start), _second(end), _second(since), n=top, known_days=known_days
            )
        finally:
            db.close()

    def past(
        self, days: list[tuple[date, datetime, datetime]], tz: tzinfo
    ) -> dict[date, PastDay | None]:
        """Rows and failures of each (day, start, end); None for a day that ended before
        the store's first row (not known, rather than zero)."""
        out: dict[date, PastDay | None] = {d: None for d, _, _ in days}
        if not days:
            return out
        db = queries.connect(self.path)
        try:
            first = db.execute("SELECT min(time) FROM mlsd_events").fetchone()[0]
            if first is None:
                return out
            # A count per day over its own range (the index alone, in order), not one
            # GROUP BY over the month that sorts every row.
            for d, start, end in days:
                if _second(end) > first:
                    totals = queries.totals(db, _second(start), _second(end))
                    out[d] = PastDay(totals.rows, totals.failures)
        finally:
            db.close()
        return out


def _second(when: datetime) -> int:
    # Stamps are whole seconds: t >= x exactly when t >= ceil(x), as the CSV reader does.
    return math.ceil(when.timestamp())


def day_figures(
    db: sqlite3.Connection, start: int, end: int, since: int, *, n: int, known_days: int
) -> DayFigures:
    """Every figure of the report of [start, end) on `db` (see the module docstring).

    The temporary tables are left to the connection's close, which deletes them whole:
    dropping the day's table of a million distinct rows took longer (0.5 s) than most
    figures. Those of an earlier call on the same connection are dropped first."""
    db.create_function("mlsd_network", 1, network, deterministic=True)
    args = {"start": start, "end": end, "since": since}
    for (name,) in db.execute("SELECT name FROM temp.sqlite_master WHERE type = 'table'"):
        db.execute(f"DROP TABLE temp.{name}")
    db.execute(_DAY)
    db.execute(_FILL, args)
    db.execute(_IPS)
    db.execute(_USERS)
    if known_days:
        db.execute(_SEEN if _has_index(db, "mlsd_events_ip") else _SEEN_SCAN, args)
    return _figures(db, start, end, n, known_days)


def _has_index(db: sqlite3.Connection, name: str) -> bool:
    query = "SELECT 1 FROM main.sqlite_master WHERE type = 'index' AND name = ?"
    return db.execute(query, (name,)).fetchone() is not None


def _figures(db: sqlite3.Connection, start: int, end: int, n: int, known_days: int) -> DayFigures:
    events, failures = db.execute(
        "SELECT coalesce(sum(n), 0), coalesce(sum(f), 0) FROM temp.day"
    ).fetchone()
    ips = db.execute("SELECT count(*) FROM temp.ips").fetchone()[0]
    users = db.execute("SELECT count(*) FROM temp.users").fetchone()[0]
    hours = max(1, -(-(end - start) // 3600))
    histogram = queries.per_hour(db, start, end)
    histogram += [0] * (hours - len(histogram))

    pairs = _ranked(db, "SELECT user, ip, sum(f) AS v FROM temp.day GROUP BY user, ip", n, 2)
    details = _pair_details(db, [(str(r[0]), str(r[1])) for r in pairs.top])
    addresses = _ranked(db, "SELECT ip, f AS v, users, t0, t1 FROM temp.ips", n)
    spread = _ranked(
        db,
        f"SELECT user, ips AS v, f FROM temp.users WHERE ips >= {MANY_IPS}",  # noqa: S608
        n,
    )
    new_ips, new_failures, new = _newcomers(db, n) if known_days else (0, 0, Ranked([]))
    top_ips = [str(r[0]) for r in addresses.top]
    geo = _best_geo(db, top_ips + [str(r[0]) for r in new.top])
    seen = _seen(db, top_ips) if known_days else set()
    countries = _countries(db, [str(r[0]) for r in spread.top])
    return DayFigures(
        events=int(events),
        failures=int(failures),
        ips=int(ips),
        users=int(users),
        histogram=histogram,
        services=_pairs_of(_ranked(db, "SELECT service, sum(f) AS v FROM temp.day GROUP BY 1", n)),
        rdns=_pairs_of(_ranked(db, "SELECT rdns, sum(f) AS v FROM temp.day GROUP BY 1", n)),
        pairs=Ranked(
            [Pair(u, ip, int(v), *details[u, ip]) for u, ip, v in pairs.top],
            pairs.rest,
            pairs.rest_value,
        ),
        addresses=Ranked(
            [
                Address(
                    ip,
                    int(v),
                    int(k),
                    *geo[ip],
                    int(t0),
                    int(t1),
                    (ip in seen) if known_days else None,
                )
                for ip, v, k, t0, t1 in addresses.top
            ],
            addresses.rest,
            addresses.rest_value,
        ),
        networks=_groups(
            _ranked(
                db,
                "SELECT mlsd_network(ip), sum(f) AS v, count(*) FROM temp.ips GROUP BY 1",
                n,
            )
        ),
        usernames=_groups(_ranked(db, "SELECT user, f AS v, ips FROM temp.users", n)),
        spread=Ranked(
            [Spread(str(u), int(k), int(f), countries[str(u)]) for u, k, f in spread.top],
            spread.rest,
            spread.rest_value,
        ),
        countries=_groups(
            _ranked(db, "SELECT cc, sum(f) AS v, count(DISTINCT ip) FROM temp.day GROUP BY 1", n)
        ),
        # The owner shown with an ASN is that of its first row (min(m) picks the row).
        asns=_groups(
            _ranked(
                db,
                "SELECT asn, sum(f) AS v, count(DISTINCT ip), aso, min(m) FROM temp.day "
                "GROUP BY asn",
                n,
            )
        ),
        orgs=_groups(
            _ranked(db, "SELECT aso, sum(f) AS v, count(DISTINCT ip) FROM temp.day GROUP BY 1", n)
        ),
        newcomers=Newcomers(
            known_days,
            new_ips,
            new_failures,
            int(ips) - new_ips,
            int(failures) - new_failures,
            Ranked(
                [NewAddress(str(ip), int(v), *geo[str(ip)]) for ip, v in new.top],
                new.rest,
                new.rest_value,
            ),
        ),
    )


def _ranked(db: sqlite3.Connection, select: str, n: int, keys: int = 1) -> Ranked[Any]:
    """The `n` rows of `select` (its first `keys` columns the key, then `v`, then extras)
    with the largest `v`, ties by key, and how many rows and how much `v` the cut left out.

    A grouping is stored in a temporary table first, then counted and cut in two passes:
    a window count over the query kept all of it in the sorter before the cut (0.43 s
    instead of 0.09 s for the 1 M addresses of a day of distinct attackers). A select from
    one of the day's tables is read as it is."""
    source = select
    if " GROUP BY " in select:
        name = f"ranked_{next(_RANKED)}"
        db.execute(f"CREATE TEMP TABLE {name} AS {select}")
        source = f"SELECT * FROM temp.{name}"  # noqa: S608 - our own name
    order = ", ".join(str(k) for k in range(1, keys + 1))
    total, value = db.execute(
        f"SELECT count(*), coalesce(sum(v), 0) FROM ({source})"  # noqa: S608 - constants
    ).fetchone()
    top = [tuple(r) for r in db.execute(f"{source} ORDER BY v DESC, {order} LIMIT ?", (n,))]
    rest = int(total) - len(top)
    if rest <= 0:
        return Ranked(top)
    return Ranked(top, rest, int(value) - sum(int(r[keys]) for r in top))


_RANKED: Final = itertools.count()


def _pairs_of(ranked: Ranked[Any]) -> Ranked[tuple[str, int]]:
    return Ranked([(str(k), int(v)) for k, v in ranked.top], ranked.rest, ranked.rest_value)


def _groups(ranked: Ranked[Any]) -> Ranked[Group]:
    return Ranked(
        [
            Group(str(r[0]), int(r[1]), int(r[2]), str(r[3]) if len(r) > 3 else "")
            for r in ranked.top
        ],
        ranked.rest,
        ranked.rest_value,
    )


def _values(keys: Sequence[Any]) -> str:
    return ", ".join("?" for _ in keys)


def _best(ips: str) -> str:
    """The CTEs `geo` and `best`: each IP of `ips` (an SQL list or subquery) with the
    country and ASN of most of its failures over the day, ties to the first seen."""
    return f"""geo AS (
    SELECT ip, cc, asn, sum(f) AS f, min(m) AS m FROM temp.day
    WHERE ip IN ({ips}) GROUP BY ip, cc, asn, aso
),
best AS (
    SELECT ip, cc, asn FROM (
        SELECT ip, cc, asn, row_number() OVER (PARTITION BY ip ORDER BY f DESC, m) AS r
        FROM geo
    ) WHERE r = 1
)"""  # noqa: S608 - `ips` is placeholders or a constant subquery, never a value


def _best_geo(db: sqlite3.Connection, ips: list[str]) -> dict[str, tuple[str, str]]:
    """Each IP's (country, ASN), by `_best`'s rule."""
    unique = sorted(set(ips))
    if not unique:
        return {}
    query = f"WITH {_best(_values(unique))} SELECT ip, cc, asn FROM best"  # noqa: S608
    return {str(ip): (str(cc), str(asn)) for ip, cc, asn in db.execute(query, unique)}


def _pair_details(
    db: sqlite3.Connection, pairs: list[tuple[str, str]]
) -> dict[tuple[str, str], tuple[str, str]]:
    """Each (user, IP) pair's hostname and country, by the rules of the module docstring."""
    if not pairs:
        return {}
    values = ", ".join("(?, ?)" for _ in pairs)
    rows = db.execute(
        "SELECT user, ip, hostname, cc, sum(f), min(m) AS first FROM temp.day "  # noqa: S608
        f"WHERE (user, ip) IN (VALUES {values}) GROUP BY user, ip, hostname, cc ORDER BY first",
        [x for pair in pairs for x in pair],
    )
    host: dict[tuple[str, str], tuple[int, int, str]] = {}
    country: dict[tuple[str, str], tuple[int, str]] = {}
    for user, ip, name, cc, value, _ in rows:
        pair, f = (str(user), str(ip)), int(value)
        rank = 0 if not name else 1 if name == "unknown" else 2
        if (rank, f) > host.get(pair, (-1, 0, ""))[:2]:
            host[pair] = (rank, f, str(name))
        if f > country.get(pair, (0, ""))[0]:
            country[pair] = (f, str(cc))
    return {pair: (host[pair][2], country[pair][1]) for pair in pairs}


_COUNTRIES: Final = f"""
WITH users(user) AS (VALUES {{users}}),
pairs AS (SELECT DISTINCT user, ip FROM temp.day WHERE user IN users),
{_best("SELECT ip FROM pairs")}
SELECT pairs.user, count(DISTINCT best.cc) FROM pairs JOIN best USING (ip) GROUP BY pairs.user
"""  # noqa: S608 - constants only; the users are parameters


def _countries(db: sqlite3.Connection, users: list[str]) -> dict[str, int]:
    """For each user, how many countries its IPs are from (each IP's own country, by
    `_best`'s rule) — in SQL: a user may have a million IPs."""
    if not users:
        return {}
    query = _COUNTRIES.format(users=", ".join("(?)" for _ in users))
    counted = {str(u): int(c) for u, c in db.execute(query, users)}
    return {u: counted.get(u, 0) for u in users}


def _seen(db: sqlite3.Connection, ips: Iterable[str]) -> set[str]:
    wanted = sorted(set(ips))
    if not wanted:
        return set()
    rows = db.execute(
        f"SELECT ip FROM temp.seen WHERE ip IN ({_values(wanted)})",  # noqa: S608
        wanted,
    )
    return {str(r[0]) for r in rows}


def _newcomers(db: sqlite3.Connection, n: int) -> tuple[int, int, Ranked[Any]]:
    """The day's IPs not in `temp.seen`: how many, their failures, and the top `n`."""
    new = _ranked(db, "SELECT ip, f AS v FROM temp.ips WHERE ip NOT IN temp.seen", n)
    shown = sum(int(v) for _, v in new.top)
    return len(new.top) + new.rest, shown + new.rest_value, new
