"""`mlsd run` as a service: start-up, serve, shutdown, and what systemd is told on the way.

Start-up: lock and recovery (mlsd.ingest.session.open_session), the GeoIP databases and the
resolver, the follower task with its inotify watches, the report task; then READY=1.
Catch-up may still be running at READY: STATUS= says how far behind reading is. A log
mlsd may not read does not hold READY back: STATUS= and an error line say why, and
reading starts by itself once the permission is fixed (mlsd.app.logwatch).

Serve: one loop acts on what the signal handlers recorded (they only set flags, so no
work ever runs inside a handler), refreshes STATUS= every few seconds, and notices a
follower that died. WATCHDOG=1 is sent by its own task on the same event loop, so a
loop that is stuck stops the pings and systemd restarts the service.

Shutdown, in this order and within STOP_BOUND seconds: STOPPING=1; stop intake (the
follower finishes and commits the batch it is on; its checkpoint is written with it);
stop the report task (an unsent report stays in the outbox for the next start); write
the day's counters; the summary line; exit 0. A second SIGTERM or SIGINT exits at once:
that is a crash as far as the CSV is concerned, which recovery handles exactly. The same
signal again within REPEAT_WINDOW of the first is not a second request but the first one
delivered twice (`timeout` signals the whole process group, and a wrapper that forwards
it, as `make run` did, delivers it again in the same instant): it is ignored, so a quick
shutdown still ends with its summary line.

STOPPING=1 goes first, not last: systemd documents it as "beginning its shutdown", and
a manager that knows the service is stopping does not take a slow stop for a hang.

A reload's configuration is read and handed out by mlsd.app.reload, the reports the
sender asks for are built by mlsd.app.report_jobs: this module decides when.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from datetime import UTC, date, datetime
from typing import Final

from mlsd import access, logs
from mlsd.app import fleetjob, geoip_job, reload, report_jobs, statusline, storejob
from mlsd.app.logwatch import LogWatch
from mlsd.app.metrics_wiring import Metrics
from mlsd.app.report_jobs import ReportJobs
from mlsd.app.sentineljob import SentinelJob
from mlsd.app.systemd import Notifier, watchdog_interval
from mlsd.config import Config
from mlsd.enrich.enricher import Enricher
from mlsd.enrich.geo import Geo
from mlsd.errors import ConfigError, StateError
from mlsd.ingest import session
from mlsd.ingest.grammar import Skip
from mlsd.report.outbox import ReportSender
from mlsd.store.ship import Shipper
from mlsd.watched import DayCounts, Ledger

log = logs.get("mlsd.service")

STOP_BOUND: Final = 20.0
"""Seconds shutdown may take before it is abandoned (the unit's TimeoutStopSec is 30)."""
STATUS_EVERY: Final = 5.0
"""How often STATUS= and the day's counters are refreshed."""
LEDGER_EVERY: Final = 60.0
"""How often, at most, the day's counters are written while they change (`mlsd status`
reads them; a kill -9 loses at most this much of them). The first write is at the first
status refresh, so a running daemon's counters exist within seconds of its start."""
REPEAT_WINDOW: Final = 1.0
"""Seconds within which the same stop signal again is the first one delivered twice."""

ROOT_WARNING: Final = (
    "running as root: mlsd only needs to read the mail log and write its CSV and state, "
    "and it parses text chosen by attackers; run it as an unprivileged user in the 'adm' "
    "group instead (the shipped systemd unit does: DynamicUser=yes, "
    "SupplementaryGroups=adm), see README 'Install on a mail server'"
)


class Service:
    """One run of the daemon; `await Service(cfg).run()` returns the exit status."""

    def __init__(self, cfg: Config, notifier: Notifier | None = None) -> None:
        self.cfg = cfg
        self.notifier = notifier if notifier is not None else Notifier()
        self._intent = asyncio.Event()
        self._stop_signal: int | None = None
        self._stop_signal_at = 0.0
        self._reload_wanted = False
        self._report_wanted = False
        self._reload_error = ""
        self._last_status = ""
        self.shippers: dict[str, Shipper] = {}  # the store's and the fleet's, while they run
        self._stop_follow = asyncio.Event()
        self._ledger_saved = -LEDGER_EVERY  # the first refresh writes them

    # ---- signals: record intent, act later

    def _on_signal(self, signum: int) -> None:
        if signum in (signal.SIGTERM, signal.SIGINT):
            if (
                self._stop_signal == signum
                and time.monotonic() - self._stop_signal_at < REPEAT_WINDOW
            ):
                # The first request delivered twice (the process group and a forwarder):
                # not the operator insisting.
                log.info(
                    "signal again: the same request, still stopping",
                    signal=signal.Signals(signum).name,
                    within_s=REPEAT_WINDOW,
                )
                return
            if self._stop_signal is not None:
                # The operator insists: leave now. The CSV is as after a crash, which
                # recovery cuts back to the checkpoint.
                sys.stderr.write(
                    f"mlsd: second {signal.Signals(signum).name}: exiting at once, "
                    "without finishing the current batch\n"
                )
                sys.stderr.flush()
                os._exit(128 + signum)
            self._stop_signal = signum
            self._stop_signal_at = time.monotonic()
        elif signum == signal.SIGHUP:
            self._reload_wanted = True
        elif signum == signal.SIGUSR1:
            self._report_wanted = True
        self._intent.set()

    # ---- the lifecycle

    async def run(self) -> int:
        """Start up, serve until told to stop, shut down. Raises on a failed start-up."""
        loop = asyncio.get_running_loop()
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
        for sig in handled:
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            return await self._run()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
            self.notifier.close()

    async def _run(self) -> int:
        if os.geteuid() == 0:
            log.warning(ROOT_WARNING)
        problems = access.state_problems(self.cfg.paths.state_dir, self.cfg.paths.csv)
        for extra in problems[1:]:
            log.error(extra)
        if problems:
            raise StateError(problems[0])
        self.geo = Geo(self.cfg.geoip)
        self.enricher = Enricher(self.cfg, self.geo)
        try:
            self.session = session.open_session(self.cfg, self.enricher)
        except BaseException:
            await self.enricher.close()
            raise
        try:
            self.ledger = Ledger(self.cfg.paths.state_dir)
            if self.session.first_start is not None:
                # Watched from now on: this day's report says so, and no earlier day is mailed.
                self.ledger.note_first_start(
                    self._today(), datetime.now(UTC), self.session.first_start
                )
            self.reports = ReportJobs(self.cfg, self.session, self.geo, self.ledger, self._account)
            # Refuses an outbox others can write to (StateError): close what is open.
            self.sender = ReportSender(
                self.cfg, self.reports.produce, first_day=self.ledger.first_day()
            )
            # Refuses an alerts journal that is a link or open to others, the same way.
            self.sentinel = SentinelJob(self.cfg, self.session, self.sender)
        except BaseException:
            session.close_session(self.session)
            await self.enricher.close()
            raise
        report_jobs.describe(self.cfg, self.sender)
        self.logwatch = LogWatch(self.session)
        self.sentinel.start()  # before the first batch: it must see every one
        follow = asyncio.create_task(
            fleetjob.follow_and_ship(
                self.session, self._stop_follow, self.shippers, storejob.logins_committed_of
            )
        )
        reports = asyncio.create_task(self.sender.run())
        interval = watchdog_interval()
        pinger = asyncio.create_task(self._watchdog(interval)) if interval else None
        self.metrics = Metrics(
            self.cfg.metrics.listen,
            self.session,
            self.sender,
            self.shippers,
            alerts=self.sentinel.mailer.counts,
        )
        await self.metrics.start(self.cfg.paths.mail_log)
        # READY=1 even when the log cannot be read: without it systemd would kill and
        # restart mlsd in a loop (TimeoutStartSec), the error drowned in restarts, and a
        # fixed permission would wait for the next restart. Ready, with STATUS= saying
        # what is wrong, `systemctl status mlsd` shows the reason, and reading starts by
        # itself once the permission is fixed (the follower's reconcile tick looks again).
        self.logwatch.check(self.cfg)
        self.notifier.ready(self._status())
        warm = asyncio.create_task(self.reports.warm(self._today()))
        geoip_job.start(lambda: self.cfg)  # [geoip] update; ends with the loop
        code = 1
        try:
            code = await self._serve(follow)
        finally:
            warm.cancel()
            code = await self._shutdown(follow, reports, pinger, code)
        return code

    async def _serve(self, follow: asyncio.Task[None]) -> int:
        while True:
            waiter = asyncio.ensure_future(self._intent.wait())
            try:
                await asyncio.wait(
                    {waiter, follow}, timeout=STATUS_EVERY, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                waiter.cancel()
            self._intent.clear()
            if follow.done():
                exc = follow.exception()
                # A failed write or an unreadable state: stopping is the only safe answer
                # (mlsd.pipeline says why); systemd's Restart=on-failure takes it from there.
                log.error(
                    "following stopped",
                    error=str(exc) if exc is not None else "the follower ended",
                )
                self.notifier.status(f"failed: {exc}")
                return 1
            if self._stop_signal is not None:
                log.info(
                    "stopping after the current batch",
                    signal=signal.Signals(self._stop_signal).name,
                )
                return 0
            if self._reload_wanted:
                self._reload_wanted = False
                await self._reload()
            if self._report_wanted:
                self._report_wanted = False
                log.info("signal SIGUSR1: building the report of today so far")
                self.sender.request_now()
            self.logwatch.check(self.cfg)
            self._set_status()  # also adds the running totals to the day's counters
            if self.ledger.changed and time.monotonic() - self._ledger_saved >= LEDGER_EVERY:
                self._ledger_saved = time.monotonic()
                self.ledger.save()

    async def _shutdown(
        self,
        follow: asyncio.Task[None],
        reports: asyncio.Task[None],
        pinger: asyncio.Task[None] | None,
        code: int,
    ) -> int:
        deadline = time.monotonic() + STOP_BOUND
        self.notifier.stopping("stopping: committing the current batch")
        self._stop_follow.set()
        try:
            await asyncio.wait_for(asyncio.shield(follow), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            log.error("shutdown: the follower did not stop in time", within_s=STOP_BOUND)
            follow.cancel()
            code = 1
        except Exception:  # noqa: S110 - already logged by _serve, and the exit code says so
            pass
        for task in (reports, pinger):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, max(0.1, deadline - time.monotonic()))
        await self.metrics.close()
        self._account()
        self.ledger.save()
        session.close_session(self.session)
        await self.enricher.close()
        return code

    async def _watchdog(self, interval: float) -> None:
        # From the event loop itself: if the loop is stuck, the pings stop.
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)

    # ---- reload

    async def _reload(self) -> None:
        self.notifier.reloading()
        path = str(self.cfg.source_file)
        log.info("signal SIGHUP: reloading", config=path)
        try:
            got = reload.reread(self.cfg)
        except ConfigError as exc:
            self._reload_error = f"reload failed, previous config kept: {exc}"
            log.error("reload failed, previous config kept", error=str(exc))
            self.notifier.ready(self._status())
            return
        try:
            await reload.apply(got.config, self.session, self.sender, self.reports)
            self.sentinel.reconfigure(got.config)
        except Exception as exc:
            self._reload_error = f"reload failed, previous config kept: {exc}"
            log.exception("reload failed, previous config kept", error=str(exc))
            self.notifier.ready(self._status())
            return
        self.cfg = got.config
        self._reload_error = ""
        log.info("reloaded", config=path, changed=",".join(got.changed) or "nothing")
        if got.refused:
            self._reload_error = "not applied until a restart: " + ", ".join(
                f"[paths] {k}" for k in got.refused
            )
            log.warning(
                "[paths] changed: the checkpoint and the CSV are bound to them, so this needs "
                "a restart (systemctl restart mlsd); the rest of the new config is applied",
                keys=",".join(got.refused),
            )
        if got.source:
            names = ", ".join(f"[source] {reload.SOURCE_KEYS[k]}" for k in got.source)
            self._reload_error = (
                f"{self._reload_error}, {names}"
                if got.refused
                else f"not applied until a restart: {names}"
            )
            log.warning(
                f"{names} changed: the source being read needs a restart (systemctl restart "
                "mlsd); the rest of the new config is applied"
            )
        self.notifier.ready(self._status())

    # ---- status

    def _today(self) -> date:
        return datetime.now(UTC).astimezone(self.cfg.report_tz()).date()

    def _account(self) -> None:
        c = self.session.pipeline.counters
        self.ledger.record(
            self._today(),
            DayCounts(
                lines=c.lines,
                events=c.events,
                server_errors=c.skipped[Skip.SERVER_ERROR],
                gaps=self.session.gaps,
            ),
        )

    def _status(self) -> str:
        self._account()
        today = self.ledger.get(self._today()) or DayCounts()
        return statusline.compose(
            self.cfg,
            self.session,
            events_today=today.events,
            log_problem=self.logwatch.problem,
            reading_live=lambda: self.logwatch.reading_live(self.cfg),
            alerts_today=self.sentinel.today(),
            reload_error=self._reload_error,
            pending_error=self.sender.pending_error,
            shippers=self.shippers,
        )

    def _set_status(self) -> None:
        status = self._status()
        if status != self._last_status:
            self._last_status = status
            self.notifier.status(status)
