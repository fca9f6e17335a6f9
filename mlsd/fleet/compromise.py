"""The fleet report's "Possible compromises across servers": logins after failures that no
single server may have seen (issue 20's first rule, over the whole fleet).

A login of the day (`mlsd_logins`, event `login`) whose user had at least `failures`
failed attempts in the `window` before it, on any server of the fleet: an attacker who
spreads guesses over the MX and the IMAP server, then logs in on a third, is shown here
with the servers the failures came from. Computed by PostgreSQL per login through the
(user, time) index; the rows never come into Python, only the `top` worst.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

import psycopg

_QUERY: Final = """
SELECT l.node, l.time, l."user", l.ip, l.country_code, f.attempts, f.nodes,
       count(*) OVER ()
FROM mlsd_logins l
CROSS JOIN LATERAL (
    SELECT sum(e.attempts) AS attempts, (array_agg(DISTINCT e.node ORDER BY e.node))[1:5] AS nodes
    FROM mlsd_events e
    WHERE e."user" = l."user" AND e.time > l.time - %(window)s AND e.time <= l.time
) f
WHERE l.time >= %(start)s AND l.time < %(end)s AND l.event = 'login'
  AND f.attempts >= %(failures)s
ORDER BY f.attempts DESC, l.time, l."user"
LIMIT %(top)s
"""


@dataclass(frozen=True, slots=True)
class FleetLogin:
    """A login after failures for the same user somewhere in the fleet."""

    node: str
    """The server the login was on."""
    time: datetime
    user: str
    ip: str
    country: str
    failures: int
    """Attempts that failed for the user, on any server, in the window before the login."""
    failed_on: tuple[str, ...]
    """The servers those failures were on (the first five by name)."""


def logins_after_failures(
    conn: psycopg.Connection[tuple[object, ...]],
    start: datetime,
    end: datetime,
    *,
    failures: int,
    window_minutes: int,
    top: int,
) -> tuple[tuple[FleetLogin, ...], int]:
    """The `top` logins of [start, end) after the most failures, and how many in all.
    None with `failures = 0` (the rule is off)."""
    if failures <= 0:
        return (), 0
    params = {
        "start": start,
        "end": end,
        "window": timedelta(minutes=window_minutes),
        "failures": failures,
        "top": top,
    }
    try:
        rows = conn.execute(_QUERY, params).fetchall()
    except psycopg.errors.UndefinedTable:
        return (), 0  # a fleet schema from before the logins (every node older than it)
    found = tuple(
        FleetLogin(
            node=str(r[0]),
            time=r[1] if isinstance(r[1], datetime) else start,
            user=str(r[2]),
            ip=str(r[3]),
            country=str(r[4]),
            failures=int(str(r[5])),
            failed_on=tuple(str(n) for n in (r[6] if isinstance(r[6], list) else ())),
        )
        for r in rows
    )
    return found, int(str(rows[0][7])) if rows else 0
