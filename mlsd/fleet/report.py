"""The fleet report's figures: one day of the fleet's PostgreSQL, computed by the database.

Every figure is an aggregate (`GROUP BY`, and `LIMIT` for the top lists): the rows never
come into Python, whatever the fleet's size. It is read from the day totals the database
keeps as rows are stored (mlsd.fleet.rollup_sql) when they can give the day, else from the
day's rows (mlsd.fleet.report_sql has both; they give the same figures).

For the day [start, end) in `[report] timezone` (today's: the day so far):

- per node: rows, attempts, distinct IPs and users, and its newest row in the day;
- what only a fleet sees: IPs seen by two or more nodes, and usernames tried on two or
  more nodes (how many nodes, how many attempts, top N, and how many there are in all);
- the fleet's totals and its top IPs, users and countries;
- coverage: per node (from its rows and from `mlsd_positions`), its newest row in the day,
  when it last shipped, and whether it has shipped past the day's end. Shipping follows the
  CSV's order, so a node with a row after the day's end has shipped all of the day; one
  without may be behind (or quiet since): the report names it and says up to when.

The role of `[fleet] url` must be allowed to read `mlsd_events`, `mlsd_positions` and the
day totals (the owner is; a node's role may only insert).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

import psycopg

from mlsd.fleet import report_sql
from mlsd.fleet.compromise import FleetLogin, logins_after_failures

TOP: Final = 10
"""Entries in each top list."""
BEHIND_AFTER: Final = timedelta(minutes=10)
"""Today: a node that has not shipped for this long is named as behind."""

WORK_MEM: Final = "64MB"
"""The report's session: the pairs are hashed in memory rather than sorted on disk."""


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
    compromises: tuple[FleetLogin, ...] = ()
    """Logins after failures for the user across the fleet (mlsd.fleet.compromise)."""
    compromises_total: int = 0

    def behind(self) -> tuple[NodeLine, ...]:
        """The nodes whose rows for the day may not all be there."""
        return tuple(n for n in self.per_node if not n.complete)


def totals_usable(
    conn: psycopg.Connection[tuple[object, ...]], params: Mapping[str, object]
) -> bool:
    """Whether the day totals can give the day of `params` (a database before schema
    version 3 has none)."""
    try:
        row = conn.execute(report_sql.USABLE, params).fetchone()
    except psycopg.errors.UndefinedTable:
        return False
    return bool(row and row[0])


def _int(value: object) -> int:
    return int(str(value)) if value is not None else 0


def _when(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _cross(rows: list[tuple[object, ...]], some_at: int) -> tuple[tuple[Cross, ...], int]:
    found = tuple(
        Cross(str(r[1]), _int(r[2]), _int(r[3]), tuple(str(n) for n in r[some_at] or ()))  # type: ignore[attr-defined]
        for r in rows
    )
    return found, _int(rows[0][4]) if rows else 0


def _tops(rows: list[tuple[object, ...]]) -> tuple[Top, ...]:
    return tuple(Top(str(r[1]), _int(r[2]), _int(r[3])) for r in rows)


def _kinds(rows: list[tuple[object, ...]]) -> dict[str, list[tuple[object, ...]]]:
    out: dict[str, list[tuple[object, ...]]] = {}
    for r in rows:
        out.setdefault(str(r[0]), []).append(r)
    return out


def build(
    conn: psycopg.Connection[tuple[object, ...]],
    day: date,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    top: int = TOP,
    failures: int = 10,
    window_minutes: int = 60,
    totals: bool | None = None,
) -> FleetReport:
    """The figures of the day [start, end) (aware datetimes). Today's (`end` > `now`) are
    the day so far: `end` is shown as `now`, and rows already stamped later in the day
    count (nothing stored is hidden).

    `totals`: read the day totals (True), the rows (False), or the totals when they can
    give this day (None: mlsd.fleet.report_sql.USABLE)."""
    partial = end > now
    params: dict[str, object] = {
        "day": day, "start": start, "end": end, "after": end + timedelta(days=1), "top": top,
    }  # fmt: skip
    if totals is None:
        totals = totals_usable(conn, params)
    conn.execute("SELECT set_config('work_mem', %s, false)", (WORK_MEM,))
    sql = report_sql
    by_ip = _kinds(conn.execute(sql.TOTALS_BY_IP if totals else sql.ROWS_BY_IP, params).fetchall())
    by_user = _kinds(
        conn.execute(sql.TOTALS_BY_USER if totals else sql.ROWS_BY_USER, params).fetchall()
    )
    users_of = {str(r[1]): _int(r[2]) for r in by_user.get("node", [])}
    seen = {str(r[1]): r for r in by_ip.get("node", [])}
    params["nodes"] = sorted(seen)
    per_node: list[NodeLine] = []
    coverage = sql.TOTALS_COVERAGE if totals else sql.ROWS_COVERAGE
    if partial:
        end = now
    for node_, updated, later in conn.execute(coverage, params).fetchall():
        node = str(node_)
        shipped = _when(updated)
        if partial:
            complete = shipped is not None and shipped >= now - BEHIND_AFTER
        else:
            complete = bool(later)
        r = seen.get(node)
        per_node.append(
            NodeLine(
                node=node,
                rows=_int(r[2]) if r else 0,
                attempts=_int(r[3]) if r else 0,
                ips=_int(r[4]) if r else 0,
                users=users_of.get(node, 0),
                newest=_when(r[5]) if r else None,
                shipped_at=shipped,
                complete=complete,
            )
        )
    total = by_ip["total"][0]
    cross_ips, n_ips = _cross(by_ip.get("cross", []), 6)
    cross_users, n_users = _cross(by_user.get("cross", []), 5)
    compromises, n_compromises = logins_after_failures(
        conn, start, end, failures=failures, window_minutes=window_minutes, top=top
    )
    return FleetReport(
        day=day,
        start=start,
        end=end,
        partial=partial,
        rows=_int(total[2]),
        attempts=_int(total[3]),
        ips=_int(total[4]),
        users=_int(by_user["total"][0][2]),
        nodes_seen=len(seen),
        per_node=tuple(per_node),
        cross_ips=cross_ips,
        cross_ips_total=n_ips,
        cross_users=cross_users,
        cross_users_total=n_users,
        top_ips=_tops(by_ip.get("top", [])),
        top_users=_tops(by_user.get("top", [])),
        top_countries=_tops(by_ip.get("country", [])),
        compromises=compromises,
        compromises_total=n_compromises,
    )
