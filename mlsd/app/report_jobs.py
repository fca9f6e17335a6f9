"""The daemon's report jobs: a day's report built for the sender, the history summarised
once at start, and the line that says when reports go.

Each build runs in a child process with a memory limit (mlsd.app.isolate): a report's
memory grows with the day's distinct names and IPs, which an attacker chooses. One job at
a time: the history warm-up and a report would otherwise summarise the same days twice.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Final

from mlsd import logs
from mlsd.app import fleetmail, storeread
from mlsd.app.isolate import run_limited
from mlsd.config import Config
from mlsd.enrich.geo import Geo
from mlsd.ingest import session
from mlsd.report import compose, history, message
from mlsd.report.outbox import Rendered, ReportSender
from mlsd.watched import Ledger

log = logs.get("mlsd.service")
STORE_WAIT: Final = 10.0
"""Seconds a report waits for the event store to hold the rows just committed."""


class ReportJobs:
    """Builds the reports of a running daemon; `cfg` is replaced on reload."""

    def __init__(
        self,
        cfg: Config,
        opened: session.Session,
        geo: Geo,
        ledger: Ledger,
        account: Callable[[], None],
    ) -> None:
        self.cfg = cfg
        self._session = opened
        self._geo = geo
        self._ledger = ledger
        self._account = account
        """Adds the running totals to the day's counters (the report shows them)."""
        self._lock = asyncio.Lock()

    async def produce(self, day: date, until: datetime | None) -> Rendered:
        """The report of `day` (up to `until` for today's so far), ready to queue."""
        # Everything read so far is committed first, so that the day is complete.
        await session.drain(self._session)
        self._account()
        coverage = compose.Coverage.of(self._ledger.get(day), self._ledger.first_start(day))
        dates = [db.summary() for db in self._geo.describe()]
        host = socket.gethostname()
        cfg = self.cfg
        source = await storeread.caught_up_within(cfg, STORE_WAIT)
        if source is None:
            log.warning(
                "report counted from the CSV: the event store is not caught up",
                day=day.isoformat(),
                waited_s=STORE_WAIT,
            )
        # A child process: its memory grows with the day's distinct names and IPs, which an
        # attacker chooses; the limit fails the report, never the daemon (mlsd.isolate).
        async with self._lock:
            built = await run_limited(
                compose.build_portable,
                cfg,
                day,
                until=until,
                coverage=coverage,
                geoip_dates=dates,
                hostname=host,
                source=source,
                limit_mib=cfg.report.max_memory,
                what=f"report of {day}",
            )
        # A thread too: the sender's domain may ask postconf and the resolver (mlsd.mailname).
        mail, sender, recipients = await asyncio.to_thread(
            message.to_message, built, cfg, now=datetime.now(UTC), hostname=host
        )
        return Rendered(
            day=day,
            partial=until is not None,
            subject=built.subject,
            text=built.text,
            html=built.html,
            events=built.events,
            message=mail,
            sender=sender,
            recipients=tuple(recipients),
        )

    async def fleet(self, day: date) -> Rendered:
        """The fleet's report of `day` (`[report] fleet = yes`), from its PostgreSQL."""
        # Threads: psycopg's connection here is the blocking one, and the sender's domain
        # may ask postconf (mlsd.mailname).
        now = datetime.now(UTC)
        cfg = self.cfg
        built = await asyncio.to_thread(fleetmail.build_day, cfg, day, now)
        return await asyncio.to_thread(fleetmail.rendered, cfg, built, now)

    async def warm(self, today: date) -> None:
        """Summarise the days before `today` now, so the first report need not read them."""
        # The report compares its day with the 30 before it. Summarising those days once,
        # now and in a thread, keeps the first report after a start from reading them all.
        try:
            async with self._lock:
                await run_limited(
                    history.warm,
                    self.cfg,
                    today,
                    limit_mib=self.cfg.report.max_memory,
                    what="report history",
                )
        except Exception:
            log.warning("report history not summarised in advance", exc_info=True)


def describe(cfg: Config, sender: ReportSender) -> None:
    """The start-up line that says when the daily report goes, and where."""
    r = cfg.report
    where = ",".join(r.to) if r.to else f"{sender.reports_dir} (no [report] to)"
    last = sender.last_queued
    log.info(
        "daily report at",
        time=r.time.strftime("%H:%M"),
        timezone=r.timezone or "system zone",
        to=where,
        last_sent=last.isoformat() if last else "never",
    )
