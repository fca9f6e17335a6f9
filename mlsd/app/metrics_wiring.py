"""`[metrics] listen`: the daemon's counters handed to mlsd.metrics, and its server started.

The one place that knows where each reading lives (the pipeline's counters, the gaps, the
follower's position, the journal cursor, the outbox, the sender); mlsd.metrics sees only
the `Readings` built here. `EXTRA` is the hook for readings other parts will have (a
store's lag, a fleet's, alerts by rule): each is a function of the running parts that
returns a prometheus_client Collector, registered at start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC
from pathlib import Path

from prometheus_client.registry import Collector

from mlsd import logs
from mlsd.alertlog import AlertCounts
from mlsd.app.behind import bytes_behind
from mlsd.config.schema import Listen
from mlsd.errors import StateError
from mlsd.ingest.grammar import Skip
from mlsd.ingest.session import Session
from mlsd.ingest.sources.journal import cursor_time
from mlsd.metrics.collector import registry
from mlsd.metrics.readings import Readings, SinkReading
from mlsd.metrics.server import MetricsServer
from mlsd.report.outbox import ReportSender
from mlsd.store.ship import Shipper

log = logs.get("mlsd.metrics")

EXTRA: list[Callable[[Session, ReportSender], Collector]] = []
"""More collectors, each built from the running parts at start (none yet: the alerts by
rule are in `Readings.alerts_by_rule`, the store's and the fleet's lag in `Readings.sinks`)."""


def take(
    session: Session,
    sender: ReportSender,
    mail_log: Path,
    shippers: Mapping[str, Shipper] | None = None,
    alerts: AlertCounts | None = None,
) -> Readings:
    """The daemon's counters now (called at each scrape, on the event loop); `alerts`:
    the sentinel's counters (None: it does not run)."""
    c = session.pipeline.counters
    now = time.time()
    journal = session.journal is not None
    cursor_age = None
    if journal and session.pipeline.cursor is not None:
        at = cursor_time(session.pipeline.cursor)
        cursor_age = None if at is None else max(0.0, now - at.timestamp())
    try:
        waiting = sender.outbox.entries()
        outbox: int | None = len(waiting)
        oldest = max(0.0, now - min(e.created for e in waiting)) if waiting else 0.0
    except (OSError, StateError):
        outbox, oldest = None, None  # STATUS= and the log say why
    return Readings(
        lines_read=c.lines,
        events_by_service=dict(c.by_service),
        # Successful logins are not counted (Skip.SUCCESS says why): no series of zeros.
        not_recorded={s.name.lower(): c.skipped[s] for s in Skip if s is not Skip.SUCCESS},
        gaps=session.gaps,
        last_event=None if c.last_event is None else c.last_event.astimezone(UTC).timestamp(),
        bytes_behind=None if journal else bytes_behind(session, mail_log),
        journal_cursor_age=cursor_age,
        outbox_messages=outbox,
        outbox_oldest_age=oldest,
        reports_delivered=sender.delivered,
        last_report_delivered=sender.last_delivered_at,
        sinks={name: _sink(sh) for name, sh in (shippers or {}).items()},
        alerts_by_rule=None if alerts is None else dict(alerts.by_rule),
    )


def _sink(shipper: Shipper) -> SinkReading:
    lag = shipper.lag()
    return SinkReading(up=lag.error is None, bytes_behind=lag.bytes, rows_behind=lag.rows)


class Metrics:
    """The endpoint of one run: `start` (a no-op when off), `close`."""

    def __init__(
        self,
        listen: Listen | None,
        session: Session,
        sender: ReportSender,
        shippers: Mapping[str, Shipper] | None = None,
        alerts: AlertCounts | None = None,
    ) -> None:
        self.listen = listen
        self.alerts = alerts
        """The sentinel's counters (mlsd.report.alertsend.AlertMailer.counts); None: off.
        Read at each scrape, so it may be set after construction, before `start`."""
        self._shippers: Mapping[str, Shipper] = shippers if shippers is not None else {}
        self._session = session
        self._sender = sender
        self._server: MetricsServer | None = None

    async def start(self, mail_log: Path) -> None:
        """Serve `/metrics` at `[metrics] listen`. An address that cannot be bound is
        logged, not fatal: metrics never stop the following (Prometheus sees the target down)."""
        if self.listen is None:
            return
        s, sender, shippers = self._session, self._sender, self._shippers
        reg = registry(
            lambda: take(s, sender, mail_log, shippers, self.alerts),
            [make(s, sender) for make in EXTRA],
        )
        server = MetricsServer(reg, self.listen.host, self.listen.port)
        try:
            await server.start()
        except OSError as exc:
            log.error(
                "metrics not served",
                listen=str(self.listen),
                error=exc.strerror or str(exc),
                fix="free the address or change [metrics] listen, then restart mlsd",
            )
            return
        self._server = server
        log.info("metrics served", listen=str(self.listen), path="/metrics")

    async def close(self) -> None:
        """Stop serving."""
        if self._server is not None:
            await self._server.close()
            self._server = None
