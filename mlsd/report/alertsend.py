"""Raised alerts, told: recorded once in the journal, a `warning` log line each, counted,
and mailed through the report's outbox within seconds (the daemon's AlertSink).

Order, for exactly once across a crash (a replayed batch raises the same alerts, same
ids): the mail is put in the outbox (tag `alert:<id>`) before the alert is appended to
the journal. A crash between the two leaves a queued mail and no journal line: the replay
finds the tag in the outbox and does not queue it twice, then records it. Both steps run
without an await between them, so the outbox cannot deliver (and remove) the entry
before the journal has the alert.

Mail is never reported as sent unless the server accepted it: delivery is the outbox's
(mlsd.report.smtp), which logs `alert mail delivered` only then, and retries otherwise.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime

from mlsd import logs
from mlsd.alertlog import AlertCounts, AlertLog
from mlsd.alerts import Alert
from mlsd.config import Config
from mlsd.errors import StateError
from mlsd.report import alertmail
from mlsd.report.display import shown
from mlsd.report.mailname import mail_hostname
from mlsd.report.outbox import ReportSender
from mlsd.report.reportstate import ALERT_TAG

log = logs.get("mlsd.sentinel")


class AlertMailer:
    """The daemon's alert sink: construct after the ReportSender, `raise_alerts` with
    each batch's alerts, `reconfigure` on SIGHUP; `counts` feeds STATUS= and metrics."""

    def __init__(
        self,
        cfg: Config,
        sender: ReportSender,
        *,
        journal: AlertLog | None = None,
        hostname: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self._sender = sender
        self._clock = clock
        self.journal = journal if journal is not None else AlertLog(cfg.paths.state_dir)
        recorded = self.journal.open()
        if self.journal.damaged:
            log.warning(
                "alerts journal has unreadable lines, skipped",
                path=str(self.journal.path),
                lines=self.journal.damaged,
            )
        # Asked once, and not here (postconf may take seconds, and this runs on the event
        # loop at start): by `prepare` in a thread, else at the first alert.
        self._hostname = hostname
        self._mail_host: str | None = None
        now = datetime.fromtimestamp(clock(), UTC)
        day = now.astimezone(cfg.report_tz()).date()
        start = datetime.combine(day, datetime.min.time(), cfg.report_tz())
        self.counts = AlertCounts.of(recorded, day, start)

    def mail_host(self) -> str:
        """The domain of the sender and the Message-ID (mlsd.report.mailname), asked once."""
        if self._mail_host is None:
            self._mail_host = mail_hostname(self._hostname or socket.gethostname())
        return self._mail_host

    async def prepare(self) -> None:
        """Ask the mail host name in a thread, before any alert needs it."""
        await asyncio.to_thread(self.mail_host)

    def reconfigure(self, cfg: Config) -> None:
        """SIGHUP: new recipients, zone, subject prefix apply to the next alert."""
        self.cfg = cfg

    def today(self) -> int:
        """Alerts raised today (the report zone's day): STATUS= "alerts today"."""
        return self.counts.roll(self._day())

    def raise_alerts(self, alerts: Sequence[Alert]) -> None:
        """Record `alerts` once each (an id already recorded is ignored), log, count,
        queue their mail and wake the outbox's delivery. Never raises: a mail that cannot
        be queued, or a journal that cannot be written, is logged as an error."""
        new = self.journal.unrecorded(alerts)
        if not new:
            return
        to = alertmail.recipients(self.cfg)
        queued = self._queued_ids() if to else set()
        for a in new:
            # Capped here (a 10 kB username); the log renderer escapes every field.
            log.warning(
                "possible compromise",
                rule=a.rule.value,
                user=shown(a.user),
                ip=shown(a.ip),
                server=shown(a.server),
                alert=a.id,
                headline=shown(a.headline),
            )
            if to and a.id not in queued:
                self._queue(a)
        try:
            self.journal.append(new)
        except OSError as exc:
            # Following must go on (a full disk stops the CSV anyway, with its own error);
            # the mail is queued and the log has each alert. A replay may mail it again.
            log.error("alerts journal not written", path=str(self.journal.path), error=str(exc))
        self.counts.note(new, self._day())
        if to:
            self._sender.request_delivery()

    def _queue(self, a: Alert) -> None:
        now = self._clock()
        try:
            data, sender, to = alertmail.to_message(
                a, self.cfg, now=datetime.fromtimestamp(now, UTC), mail_host=self.mail_host()
            )
            entry = self._sender.outbox.put(data, sender, to, now, tag=ALERT_TAG + a.id)
        except (OSError, StateError) as exc:
            log.error("alert mail not queued", alert=a.id, error=str(exc))
            return
        log.info("alert mail queued", alert=a.id, to=",".join(to), id=entry.id)

    def _queued_ids(self) -> set[str]:
        try:
            box = self._sender.outbox
            entries = [*box.entries(), *box.entries(failed=True)]
        except (OSError, StateError):
            return set()
        return {e.tag.removeprefix(ALERT_TAG) for e in entries if e.tag.startswith(ALERT_TAG)}

    def _day(self) -> date:
        return datetime.fromtimestamp(self._clock(), UTC).astimezone(self.cfg.report_tz()).date()
