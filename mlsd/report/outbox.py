"""The daily report's clock and its delivery: due days, the outbox, SIGUSR1's report now.

Once per wake-up (at the send time, when an outbox entry is due, on request, and at least
once a minute so that a suspend or a clock step is noticed): every report day that is due
and not yet sent is built and put in the outbox, then recorded as sent; then every due
outbox entry is tried. The wall clock is read afresh each time; nothing sleeps for hours.

Never for a day mlsd did not watch: the first daily report is that of the first day mlsd
watched, at least in part (`first_day`, from mlsd.coverage), sent at `[report] time` the
day after; a fresh install does not mail an empty report of the day before it started.

Exactly once per day:
- `state_dir/report.json` holds the last day queued. The outbox entry carries the day in
  its tag, and is written before report.json: after a crash between the two, the entry is
  found on start and the day counts as queued, so it is not built again.
- The outbox then delivers it once (mlsd.mailer), across restarts.
- A report asked for with SIGUSR1 is extra: it never counts as the day's report.

Alert mail (mlsd.report.alertsend) goes through the same outbox, tagged `alert:<id>`, and
is delivered at once (`request_delivery`), retried like a report.

Without `[report] to` nothing is mailed: reports are written to `state_dir/reports/`
(and the text printed when standard output is a terminal, as under `make run`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Final, TextIO

from mlsd import logs
from mlsd.config import Config
from mlsd.durable import replace_atomically
from mlsd.errors import MlsdError, StateError
from mlsd.report.reportstate import (
    ALERT_TAG,
    STATE_NAME,
    TAG_PREFIX,
    read_last_delivered,
    read_last_queued,
    tagged_day,
)
from mlsd.report.schedule import missed_days, next_report_at
from mlsd.report.smtp import Delivery, Outbox, deliver_due
from mlsd.safefs import SHARED_DIR, make_dir

MAX_SLEEP: Final = 60.0
"""Re-read the wall clock at least this often (suspend, clock steps, NTP)."""
RETRY_BUILD: Final = 300.0
"""After a report could not be built (unreadable CSV, full disk), try again this much later."""

log = logs.get("mlsd.report")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A built report, ready for the outbox or the reports directory."""

    day: date
    partial: bool
    """The current day so far (SIGUSR1, `mlsd report` of today), not a whole day."""
    subject: str
    text: str
    html: str
    events: int
    message: bytes
    sender: str
    recipients: tuple[str, ...]
    kind: str = "report"
    """`report` (the node's) or `fleet` (`[report] fleet`): only the node's report marks its
    day as queued (report.json, the outbox tag)."""


Produce = Callable[[date, datetime | None], Awaitable[Rendered]]
"""Build the report of a day (up to an instant for a partial one)."""
ProduceFleet = Callable[[date], Awaitable[Rendered]]
"""Build the fleet report of a whole day (`[report] fleet = yes`)."""


class ReportSender:
    """Runs as one task beside the follower; `request_now` and `reconfigure` are its inputs."""

    def __init__(
        self,
        cfg: Config,
        produce: Produce,
        *,
        clock: Callable[[], float] = time.time,
        console: TextIO | None = None,
        first_day: date | None = None,
        fleet: ProduceFleet | None = None,
    ) -> None:
        self.cfg = cfg
        self.first_day = first_day
        self._fleet = fleet
        """The first day mlsd watched (mlsd.coverage): no daily report for a day before."""
        self._produce = produce
        self._clock = clock
        self._console = console if console is not None else _terminal_stdout()
        state_dir = cfg.paths.state_dir
        self.outbox = Outbox(state_dir / "outbox")
        # There from the start, though a fresh install queues nothing before its first day
        # is over: an operator (and the troubleshooting guide) looks in it any time.
        self.outbox.ensure()
        self.reports_dir = state_dir / "reports"
        self._state = state_dir / STATE_NAME
        self._wake = asyncio.Event()
        self._deliver_wanted = asyncio.Event()
        self._delivering = asyncio.Lock()
        """One delivery at a time: the tick's and an alert's (mlsd.report.alertsend)."""
        self._now_wanted = False
        self._build_failed_at: float | None = None
        self.delivered = 0
        self.last_delivered_at: float | None = read_last_delivered(self._state)
        """When a report was last delivered (epoch seconds; mlsd.metrics), kept in
        report.json: a restart must not make a healthy daemon look as if it never mailed."""
        self.last_queued: date | None = self._load_last_queued()
        self.pending_error = ""
        """The last delivery error while a report waits in the outbox (for STATUS=)."""

    # ---- inputs

    def request_now(self) -> None:
        """SIGUSR1: the report of the current day so far, soon, without waiting."""
        self._now_wanted = True
        self._wake.set()

    def request_delivery(self) -> None:
        """A message was just queued (an alert mail): deliver the outbox now, not at the
        next tick, and without waiting for a report being built."""
        self._deliver_wanted.set()

    def reconfigure(self, cfg: Config) -> None:
        """SIGHUP: new time, zone, recipients or SMTP settings apply from the next wake."""
        self.cfg = cfg
        self._wake.set()

    # ---- the task

    async def run(self) -> None:
        """Until cancelled: queue due reports, deliver the outbox, sleep until needed;
        beside it, deliver at once when asked (`request_delivery`)."""
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._deliver_on_request())
            while True:
                await self.tick()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._sleep_for())
                except TimeoutError:
                    pass
                self._wake.clear()

    async def _deliver_on_request(self) -> None:
        while True:
            await self._deliver_wanted.wait()
            self._deliver_wanted.clear()
            try:
                await self._deliver(self._clock())
            except Exception:
                # Not this task's end (nor, through the task group, the report's): the
                # entry stays in the outbox and the next tick tries it again.
                log.exception("outbox delivery failed; the next tick tries again")
            # A retry the delivery scheduled is the tick's: recompute its sleep.
            self._wake.set()

    async def tick(self) -> None:
        """One round: due days, a requested report, then delivery. Never raises."""
        now = self._clock()
        if self._build_failed_at is None or now - self._build_failed_at >= RETRY_BUILD:
            await self._queue_due(now)
        if self._now_wanted:
            self._now_wanted = False
            tz = self.cfg.report_tz()
            when = datetime.fromtimestamp(now, UTC)
            await self._guarded(when.astimezone(tz).date(), when, now)
        await self._deliver(self._clock())

    # ---- internals

    async def _queue_due(self, now: float) -> None:
        rcfg = self.cfg.report
        days = missed_days(
            self.last_queued,
            datetime.fromtimestamp(now, UTC),
            rcfg.time,
            self.cfg.report_tz(),
            first_day=self.first_day,
        )
        for day in days:
            if not await self._guarded(day, None, now):
                return
            self._mark(day)

    async def _guarded(self, day: date, until: datetime | None, now: float) -> bool:
        try:
            await self._emit(await self._produce(day, until), now)
            if until is None and self._fleet is not None and self.cfg.report.fleet:
                await self._fleet_report(self._fleet, day, now)
        except asyncio.CancelledError:
            raise
        except MlsdError as exc:
            # Ours, with its reason (e.g. a day beyond [report] max_memory): no traceback.
            self._build_failed_at = now
            log.error(
                "report could not be built or queued",
                day=day.isoformat(),
                retry_s=int(RETRY_BUILD),
                error=str(exc),
            )
            return False
        except Exception:
            self._build_failed_at = now
            log.exception(
                "report could not be built or queued", day=day.isoformat(), retry_s=int(RETRY_BUILD)
            )
            return False
        self._build_failed_at = None
        return True

    async def _fleet_report(self, fleet: ProduceFleet, day: date, now: float) -> None:
        # After the node's own report, never instead of it: a fleet database that is down
        # costs this day's fleet mail (said, with the command that sends it by hand), not
        # the node's report, which is already queued.
        try:
            await self._emit(await fleet(day), now)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                "fleet report not queued",
                day=day.isoformat(),
                error=str(exc),
                by_hand=f"mlsd report --fleet --day {day.isoformat()} --send",
            )

    async def _emit(self, r: Rendered, now: float) -> None:
        if not r.recipients:
            path = self._save(r)
            log.info(
                "report written",
                day=r.day.isoformat(),
                events=r.events,
                path=str(path),
                why="no [report] to: nothing mailed",
            )
            if self._console is not None:
                self._console.write(r.text + "\n")
                self._console.flush()
            return
        if r.kind != "report":
            tag = f"{r.kind}:{r.day.isoformat()}"
        else:
            tag = "" if r.partial else f"{TAG_PREFIX}{r.day.isoformat()}"
        entry = self.outbox.put(r.message, r.sender, r.recipients, now, tag=tag)
        log.info(
            f"{r.kind} queued",
            day=r.day.isoformat(),
            so_far=r.partial,
            events=r.events,
            to=",".join(r.recipients),
            id=entry.id,
        )

    def _save(self, r: Rendered) -> Path:
        # A link planted in its place would send the reports into another directory.
        make_dir(self.reports_dir, SHARED_DIR, "reports directory")
        stem = f"{r.kind}-{r.day.isoformat()}" + ("-so-far" if r.partial else "")
        replace_atomically(self.reports_dir / f"{stem}.html", r.html.encode(), mode=0o640)
        path = self.reports_dir / f"{stem}.txt"
        replace_atomically(path, r.text.encode(), mode=0o640)
        return path

    async def _deliver(self, now: float) -> None:
        async with self._delivering:
            await self._deliver_locked(now)

    async def _deliver_locked(self, now: float) -> None:
        # Alert mail goes to [sentinel] to (default [report] to): both are allowed.
        allowed = (*self.cfg.report.to, *self.cfg.sentinel.to)
        try:
            if not self.outbox.entries():
                self.pending_error = ""
                return
            done = await deliver_due(self.outbox, self.cfg.smtp, now, allowed)
        except StateError as exc:
            # The outbox was replaced by a link or opened to others while we ran: nothing
            # in it is sent, following goes on, and the error is in STATUS= and the log.
            self.pending_error = str(exc)
            log.error("outbox not used", error=str(exc))
            return
        for d in done:
            what = d.entry.tag or d.entry.id
            if d.entry.tag.startswith(ALERT_TAG):
                _log_alert_mail(d)
                continue
            if d.state == "delivered":
                self.delivered += 1
                self.last_delivered_at = self._clock()
                if self.last_queued is not None:
                    self._mark(self.last_queued)
                self.pending_error = ""
                log.info("report delivered", mail=what, to=d.detail)
            elif d.state == "retry":
                self.pending_error = d.detail
                log.warning(
                    "report delivery failed",
                    mail=what,
                    via=f"{self.cfg.smtp.host}:{self.cfg.smtp.port}",
                    retry_at=_when(d.entry.next_attempt),
                    error=d.detail,
                )
            else:
                self.pending_error = ""
                log.error("report not delivered", mail=what, state=d.state, error=d.detail)

    def _sleep_for(self) -> float:
        now = self._clock()
        wake = now + MAX_SLEEP
        rcfg = self.cfg.report
        send_at = next_report_at(datetime.fromtimestamp(now, UTC), rcfg.time, self.cfg.report_tz())
        wake = min(wake, send_at.timestamp())
        due = self.outbox.next_due()
        if due is not None:
            wake = min(wake, due)
        return max(0.5, wake - now)

    def _load_last_queued(self) -> date | None:
        recorded: date | None = None
        days: list[date] = []
        try:
            recorded = read_last_queued(self._state)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("report state unreadable", path=str(self._state), error=str(exc))
        if recorded is not None:
            days.append(recorded)
        # A report queued just before a crash, before report.json said so.
        for entry in [*self.outbox.entries(), *self.outbox.entries(failed=True)]:
            tagged = tagged_day(entry)
            if tagged is not None:
                days.append(tagged)
        if not days:
            return None
        latest = max(days)
        if recorded is None or latest > recorded:
            # Found only in the outbox: record it now, or it is forgotten once delivered
            # and a restart before the next send time would build and mail it again.
            self._mark(latest)
        return latest

    def _mark(self, day: date) -> None:
        self.last_queued = day
        try:
            state: dict[str, object] = {"last_queued": day.isoformat()}
            if self.last_delivered_at is not None:
                state["last_delivered"] = self.last_delivered_at
            replace_atomically(self._state, json.dumps(state).encode(), mode=0o640)
        except OSError as exc:
            # The outbox tag still says it was queued; only a restart could ask again.
            log.warning("report state not written", path=str(self._state), error=str(exc))


def _log_alert_mail(d: Delivery) -> None:
    """An alert mail's delivery: its own wording; the report's counters stay the reports'."""
    if d.state == "delivered":
        log.info("alert mail delivered", mail=d.entry.tag, to=d.detail)
    elif d.state == "retry":
        log.warning(
            "alert mail delivery failed",
            mail=d.entry.tag,
            retry_at=_when(d.entry.next_attempt),
            error=d.detail,
        )
    else:
        log.error("alert mail not delivered", mail=d.entry.tag, state=d.state, error=d.detail)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _terminal_stdout() -> TextIO | None:
    return sys.stdout if sys.stdout is not None and sys.stdout.isatty() else None
