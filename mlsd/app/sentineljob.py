"""The sentinel in the daemon: warmed from the journals at start, fed every committed batch,
its alerts told through the report's outbox (issue 20).

Only `mlsd run` alerts: `mlsd scan` imports history, and the next `run` warms up from
what it wrote. The detector sees a batch after its rows are on disk and before the
checkpoint (mlsd.ingest.pipeline): a crash in between replays the batch, which raises
the same alerts with the same ids, and the alerts journal records each id once.

Nothing here may stop following: an exception from the rules or the mailer is logged and
that batch's alerts are lost, never the rows.

Warm-up reads the two CSVs, the journals, up to the lengths the checkpoint committed:
logins of the last `history_days` (+ a day and `quiet_minutes`) and failures of the last
`failure_window` (+ `quiet_minutes`), each found by the date column's binary search
(mlsd.report.window.find_offset) and typed by the store's readers of those journals
(mlsd.store.journals). A cell there is as the CSV wrote it (cleaned: a name that began
with `=` carries a `'`), so such a name's history restarts under its cleaned form;
ordinary names are the same.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from mlsd import logs
from mlsd.alerts import Observation
from mlsd.config import Config
from mlsd.ingest import session
from mlsd.logins import Kind
from mlsd.report.alertsend import AlertMailer
from mlsd.report.outbox import ReportSender
from mlsd.report.window import find_offset
from mlsd.safefs import nofollow_opener
from mlsd.sentinel.engine import Sentinel, warm_window
from mlsd.store.contract import Row, StoredRow
from mlsd.store.journals import EVENTS, LOGINS, Journal
from mlsd.store.rowmap import asn_text

log = logs.get("mlsd.sentinel")


class SentinelJob:
    """The detector and its alert sink, for one run of the daemon."""

    def __init__(self, cfg: Config, opened: session.Session, sender: ReportSender) -> None:
        self.cfg = cfg
        self.mailer = AlertMailer(cfg, sender)
        self.detector = Sentinel(cfg.sentinel)
        self.failed = 0
        """Batches whose alerts were lost to an error (logged each time)."""
        self._session = opened

    def start(self) -> None:
        """Warm the rules from the journals, then watch every committed batch."""
        started = time.monotonic()
        seen = [0]

        def counted(history: Iterator[Observation]) -> Iterator[Observation]:
            for ob in history:  # streamed: a day of failures is never held in a list
                seen[0] += 1
                yield ob

        try:
            self.detector.warm(counted(self._history(datetime.now(UTC))))
        except (OSError, ValueError) as exc:
            # Rules that start cold stay quiet longer; following must not wait on it.
            log.warning("sentinel not warmed from the journals", error=str(exc))
        log.info(
            "sentinel watching",
            warmed=seen[0],
            seconds=round(time.monotonic() - started, 3),
            alerts_today=self.mailer.today(),
        )
        self._session.pipeline.observe = self.observe
        # The sender's mail host (postconf, DNS) in a thread now, not at the first alert.
        self._prepared = asyncio.ensure_future(self.mailer.prepare())

    def observe(self, batch: Sequence[Observation]) -> None:
        """One committed batch: the rules, then the alerts told. Never raises."""
        if not batch:
            return
        try:
            alerts = self.detector.observe(batch)
            if alerts and self.cfg.sentinel.alerts:
                self.mailer.raise_alerts(alerts)
        except Exception:
            self.failed += 1
            log.exception("sentinel: this batch's alerts are lost", events=len(batch))

    def reconfigure(self, cfg: Config) -> None:
        """SIGHUP: thresholds, allow-lists and recipients apply from the next batch."""
        self.cfg = cfg
        self.detector.reconfigure(cfg.sentinel)
        self.mailer.reconfigure(cfg)

    def today(self) -> int | None:
        """Alerts recorded today (STATUS=); None when alerts are off."""
        return self.mailer.today() if self.cfg.sentinel.alerts else None

    # ---- warm-up

    def _history(self, end: datetime) -> Iterator[Observation]:
        window = warm_window(self.cfg.sentinel, end)
        committed = self._session.pipeline.committed
        tz = self.cfg.log_tz()
        csv_length = committed.csv_length if committed is not None else 0
        failures = _rows(self.cfg.paths.csv, window.failures_since, csv_length, tz, EVENTS)
        logins_length = (committed.logins_length if committed is not None else None) or 0
        logins = _rows(self.cfg.paths.logins(), window.logins_since, logins_length, tz, LOGINS)
        merged = heapq.merge(failures, logins, key=lambda row: row.time)
        return (_observation(row) for row in merged)


def _rows(path: Path, since: datetime, length: int, tz: tzinfo, journal: Journal) -> Iterator[Row]:
    """`path`'s committed rows dated at or after `since`, typed by the store's reader of
    that journal (cells by name, not by place)."""
    if length <= 0 or not path.exists():
        return
    offset = find_offset(path, since, tz)
    cells_of, typed = journal.cells, journal.row
    with open(path, "rb", opener=nofollow_opener) as fh:
        fh.seek(offset)
        left = length - offset
        for raw in fh:
            left -= len(raw)
            if left < 0:
                return  # beyond the checkpoint: not committed, cut back at the next start
            cells = cells_of(raw.decode("utf-8", "replace").rstrip("\n"))
            if cells is None:
                continue
            try:
                row = typed(cells, tz)
            except ValueError:
                continue  # a date mlsd does not write (an edited row)
            if row.time >= since:
                yield row


def _observation(row: Row) -> Observation:
    if isinstance(row, StoredRow):
        kind, attempts, recipients = Kind.FAILURE, row.attempts, 0
    else:
        kind = Kind.SUBMIT if row.event == Kind.SUBMIT.value else Kind.LOGIN
        attempts, recipients = 1, row.recipients if kind is Kind.SUBMIT else 0
    return Observation(
        time=row.time,
        kind=kind,
        user=row.user,
        ip=row.ip,
        server=row.server,
        service=row.service,
        country=row.country_code,
        asn=asn_text(row.asn),
        aso=row.aso,
        hostname=row.hostname,
        attempts=attempts,
        recipients=recipients,
    )
