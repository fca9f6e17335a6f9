"""The fleet in the daemon: a second shipper, into the fleet's PostgreSQL, beside the store's.

With `[fleet] url` set, `follow_and_ship` runs the store's follow-and-ship loop and, beside
it, a `Shipper` into a `PgSink`, woken by each commit like the store's. PostgreSQL down or
slow never stops following: the shipper backs off and the rows wait in the CSV. At stop the
fleet shipper stores what was committed before, within SHIP_BOUND seconds; the rest goes
at the next start. Without a url this is exactly `storejob.follow_and_ship`.
"""

from __future__ import annotations

import asyncio
import contextlib

from mlsd import logs
from mlsd.app import storejob
from mlsd.app.storejob import committed_of
from mlsd.fleet.pgsink import PgSink
from mlsd.ingest import session
from mlsd.store.ship import Shipper

log = logs.get("mlsd.fleet")


async def follow_and_ship(
    s: session.Session, stop: asyncio.Event, shippers: dict[str, Shipper]
) -> None:
    """The store's `follow_and_ship`, with the fleet's shipper beside it when configured
    (entered in `shippers` as "fleet" while it runs)."""
    fleet = s.cfg.fleet
    if not fleet.url:
        await storejob.follow_and_ship(s, stop, shippers)
        return
    # The url and node are bound to the running shipper (a restart applies new ones); the
    # password is read again from the reloaded configuration at each connection.
    sink = PgSink(fleet.url, password=lambda: s.cfg.fleet.password, keep_months=fleet.keep_months)
    node = fleet.node_name()
    shipper = Shipper(s.cfg.paths.csv, lambda: committed_of(s.pipeline), sink, node,
                      tz=s.pipeline.tz)  # fmt: skip
    log.info("fleet shipping", target=sink.target, node=node)
    try:
        async with storejob.beside(
            s,
            shippers,
            "fleet",
            shipper,
            run=shipper.run,
            logger=log,
            left_behind="fleet left behind at stop, shipped at the next start",
        ):
            await storejob.follow_and_ship(s, stop, shippers)
    finally:
        with contextlib.suppress(Exception):
            await sink.close()
