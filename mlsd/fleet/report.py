"""The fleet report's figures: one day of the fleet's PostgreSQL, computed by the database.

Every figure is an aggregate (`GROUP BY`, and `LIMIT` for the top lists): the rows never
come into Python, whatever the fleet's size. Values reach the SQL as parameters only.

For the day [start, end) in `[report] timezone` (`end` is now for today):

- per node: rows, attempts, distinct IPs and users, and its newest row in the day;
- what only a fleet sees: IPs seen by two or more nodes, and usernames tried on two or
  more nodes (how many nodes, how many attempts, top N, and how many there are in all);
- the fleet's totals and its top IPs, users and countries;
- coverage: per node (from its rows and from `mlsd_positions`), its newest row in the day,
  when it last shipped, and whether it has shipped past the day's end. Shipping follows the
  CSV's order, so a node with a row after the day's end has shipped all of the day; one
  without may be behind (or quiet since): the report names it and says up to when.

The role of `[fleet] url` must be allowed to read `mlsd_events` and `mlsd_positions` (the
owner is; a node's role may only insert).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

import psycopg

TOP: Final = 10
"""Entries in each top list."""
BEHIND_AFTER: Final = timedelta(minutes=10)
"""Today: a node that has not shipped for this long is named as behind."""
_MAX_NODES: Final = 1000
"""More nodes than a fleet has; the per-node query is bounded all the same."""

_DAY: Final = "time >= %(start)s AND time < %(end)s"

_NODES: Final = f"""
WITH day AS (
    SELECT node, count(*) AS n, sum(attempts) AS attempts, count(DISTINCT ip) AS ips,
           count(DISTINCT "user") AS users, max(time) AS newest
    FROM mlsd_events WHERE {_DAY} GROUP BY node
)
SELECT node, coalesce(d.n, 0), coalesce(d.attempts, 0), coalesce(d.ips, 0),
       coalesce(d.users, 0), d.newest, p.updated_at,
       EXISTS (SELECT 1 FROM mlsd_events e WHERE e.node = coalesce(d.node, p.node)
               AND e.time >= %(end)s AND e.time < %(after)s)
FROM day d FULL JOIN mlsd_positions p USING (node)
ORDER BY node LIMIT {_MAX_NODES}
"""  # noqa: S608 - constants only; values are parameters

_TOTALS: Final = f"""
SELECT count(*), coalesce(sum(attempts), 0), count(DISTINCT ip), count(DISTINCT "user"),
       count(DISTINCT node)
FROM mlsd_events WHERE {_DAY}
"""  # noqa: S608 - constants only

# `count(*) OVER ()` is taken after HAVING and before LIMIT: how many there are in all.
_CROSS: Final = {
    col: f"""
SELECT {col}, count(DISTINCT node) AS nodes, sum(attempts) AS attempts,
       (array_agg(DISTINCT node ORDER BY node))[1:5], count(*) OVER ()
FROM mlsd_events WHERE {_DAY}
GROUP BY {col} HAVING count(DISTINCT node) >= 2
ORDER BY nodes DESC, attempts DESC, {col} LIMIT %(top)s
"""  # noqa: S608 - constants only
    for col in ("ip", '"user"')
}

_TOP: Final = {
    col: f"""
SELECT {col}, sum(attempts) AS attempts, count(DISTINCT node)
FROM mlsd_events WHERE {_DAY}
GROUP BY {col} ORDER BY attempts DESC, {col} LIMIT %(top)s
"""  # noqa: S608 - constants only
    for col in ("ip", '"user"', "country_code")
}


@dataclass(frozen=True, slots=True)
class NodeLine:
    """One node: its day's figures and how far it has shipped."""

    node: str
    rows: int
    attempts: int
    ips: int
    users: int
    newest: datetime | None
    """Its newest row in the day; None = none."""
    shipped_at: datetime | None
    """When it last moved its position (`mlsd_positions.updated_at`); None = never."""
    complete: bool
    """Whether the day is all shipped (a row after the day's end, or recent shipping today)."""


@dataclass(frozen=True, slots=True)
class Cross:
    """A value (IP or user) seen on two or more nodes."""

    value: str
    nodes: int
    attempts: int
    some_nodes: tuple[str, ...]
    """The first five nodes by name."""


@dataclass(frozen=True, slots=True)
class Top:
    value: str
    attempts: int
    nodes: int


@dataclass(frozen=True, slots=True)
class FleetReport:
    """The fleet report's figures for one day."""

    day: date
    start: datetime
    end: datetime
    partial: bool
    """Today's report: the day so far."""
    rows: int
    attempts: int
    ips: int
    users: int
    nodes_seen: int
    per_node: tuple[NodeLine, ...]
    cross_ips: tuple[Cross, ...]
    cross_ips_total: int
    cross_users: tuple[Cross, ...]
    cross_users_total: int
    top_ips: tuple[Top, ...]
    top_users: tuple[Top, ...]
    top_countries: tuple[Top, ...]

    def behind(self) -> tuple[NodeLine, ...]:
        """The nodes whose rows for the day may not all be there."""
        return tuple(n for n in self.per_node if not n.complete)


def _int(value: object) -> int:
    return int(str(value)) if value is not None else 0


def _when(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _cross(rows: list[tuple[object, ...]]) -> tuple[tuple[Cross, ...], int]:
    found = tuple(
        Cross(str(r[0]), _int(r[1]), _int(r[2]), tuple(str(n) for n in r[3] or ()))  # type: ignore[attr-defined]
        for r in rows
    )
    return found, _int(rows[0][4]) if rows else 0


def _tops(rows: list[tuple[object, ...]]) -> tuple[Top, ...]:
    return tuple(Top(str(r[0]), _int(r[1]), _int(r[2])) for r in rows)


def build(
    conn: psycopg.Connection[tuple[object, ...]],
    day: date,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    top: int = TOP,
) -> FleetReport:
    """The figures of [start, end) (aware datetimes; `end` > `now` is cut to `now`)."""
    partial = end > now
    if partial:
        end = now
    params = {"start": start, "end": end, "after": end + timedelta(days=1), "top": top}

    def q(query: str) -> list[tuple[object, ...]]:
        return conn.execute(query, params).fetchall()

    per_node: list[NodeLine] = []
    for r in q(_NODES):
        shipped = _when(r[6])
        if partial:
            complete = shipped is not None and shipped >= now - BEHIND_AFTER
        else:
            complete = bool(r[7])
        per_node.append(
            NodeLine(
                str(r[0]),
                _int(r[1]),
                _int(r[2]),
                _int(r[3]),
                _int(r[4]),
                _when(r[5]),
                shipped,
                complete,
            )
        )
    totals = q(_TOTALS)[0]
    cross_ips, n_ips = _cross(q(_CROSS["ip"]))
    cross_users, n_users = _cross(q(_CROSS['"user"']))
    return FleetReport(
        day=day,
        start=start,
        end=end,
        partial=partial,
        rows=_int(totals[0]),
        attempts=_int(totals[1]),
        ips=_int(totals[2]),
        users=_int(totals[3]),
        nodes_seen=_int(totals[4]),
        per_node=tuple(per_node),
        cross_ips=cross_ips,
        cross_ips_total=n_ips,
        cross_users=cross_users,
        cross_users_total=n_users,
        top_ips=_tops(q(_TOP["ip"])),
        top_users=_tops(q(_TOP['"user"'])),
        top_countries=_tops(q(_TOP["country_code"])),
    )
