"""The fleet in the daemon: a second shipper, into the fleet's PostgreSQL, beside the store's.

With `[fleet] url` set, `follow_and_ship` runs the store's follow-and-ship loop and, beside
it, a `Shipper` into a `PgSink`, woken by each commit like the store's. PostgreSQL down or
slow never stops following: the shipper backs off and the rows wait in the CSV. At stop the
fleet shipper stores what was committed before, within SHIP_BOUND seconds; the rest goes
at the next start. Without a url this is exactly `storejob.follow_and_ship`.

Given `logins` (what the checkpoint has committed of the logins CSV), the logins go to the
fleet too, through a third shipper ("fleet-logins") on a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from datetime import tzinfo

from mlsd import logs
from mlsd.app import storejob
from mlsd.app.storejob import LoginsCommitted, committed_of
from mlsd.fleet.pgsink import PgSink
from mlsd.ingest import session
from mlsd.store import handover
from mlsd.store.journals import EVENTS, LOGINS, Journal
from mlsd.store.ship import Committed, Shipper

log = logs.get("mlsd.fleet")


async def follow_and_ship(
    s: session.Session,
    stop: asyncio.Event,
    shippers: dict[str, Shipper],
    logins: LoginsCommitted | None = None,
) -> None:
    """The store's `follow_and_ship`, with the fleet's shipper beside it when configured
    (entered in `shippers` as "fleet" while it runs), and with `logins` the fleet's logins
    shipper ("fleet-logins")."""
    fleet = s.cfg.fleet
    if not fleet.url:
        await storejob.follow_and_ship(s, stop, shippers, logins)
        return

    def inner() -> Awaitable[None]:
        if logins is None:
            return storejob.follow_and_ship(s, stop, shippers)
        return _fleet_logins(s, stop, shippers, logins)

    await _beside_fleet(s, shippers, EVENTS, lambda: committed_of(s.pipeline), inner)


async def _fleet_logins(
    s: session.Session, stop: asyncio.Event, shippers: dict[str, Shipper], logins: LoginsCommitted
) -> None:
    await _beside_fleet(
        s,
        shippers,
        LOGINS,
        lambda: logins(s.pipeline),
        lambda: storejob.follow_and_ship(s, stop, shippers, logins),
    )


async def _beside_fleet(
    s: session.Session,
    shippers: dict[str, Shipper],
    journal: Journal,
    committed: Committed,
    body: Callable[[], Awaitable[None]],
) -> None:
    """`body()` with a shipper of `journal` into the fleet beside it."""
    fleet = s.cfg.fleet
    # The url and node are bound to the running shipper (a restart applies new ones); the
    # password is read again from the reloaded configuration at each connection.
    sink = PgSink(fleet.url, password=lambda: s.cfg.fleet.password,
                  keep_months=fleet.keep_months, journal=journal,
                  zone=zone_name(s.cfg.report_tz()))  # fmt: skip
    node = fleet.node_name()
    if journal is EVENTS:
        shipper = Shipper(s.cfg.paths.csv, committed, sink, node, tz=s.pipeline.tz)
    else:
        shipper = storejob.logins_shipper(s, sink, node, committed)
    # The fleet keeps the node's position across `mlsd reset`: it goes on through the CSVs
    # reset moved aside (mlsd.store.handover).
    state_dir = s.cfg.paths.state_dir
    shipper.moved = lambda: handover.load(state_dir, journal.name)
    log.info("fleet shipping", target=sink.target, node=node, journal=journal.name)
    try:
        async with storejob.beside(
            s,
            shippers,
            sink.name,
            shipper,
            run=shipper.run,
            logger=log,
            left_behind=f"{sink.name} left behind at stop, shipped at the next start",
        ):
            await body()
    finally:
        with contextlib.suppress(Exception):
            await sink.close()


def zone_name(tz: tzinfo) -> str:
    """The IANA name of `tz` for PostgreSQL: its key, or for the system's zone what
    /etc/localtime links to; UTC when it has no name."""
    key = getattr(tz, "key", None)
    if isinstance(key, str) and key and key != "localtime":
        return key
    target = os.path.realpath("/etc/localtime")
    _, found, name = target.partition("/zoneinfo/")
    return name if found and name else "UTC"
