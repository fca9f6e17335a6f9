"""The report scheduler: due days, catch-up, crash window, outbox delivery, DST, SIGUSR1.

A fake clock (a mutable float) drives `ReportSender.tick()`; delivery goes to a real SMTP
server on loopback (tests/smtpkit.py). Every test asserts the exact days built and the
exact number of messages the server accepted, across restarts (a new ReportSender on the
same state directory).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import structlog

from mlsd import config
from mlsd.report import schedule
from mlsd.report.outbox import RETRY_BUILD, Rendered, ReportSender
from mlsd.report.reportstate import STATE_NAME
from mlsd.report.smtp import BACKOFF_FIRST, Outbox
from tests import smtpkit

SENDER, TO = "mlsd@mail.example", ("admin@example.org", "sec@example.org")
DAY = timedelta(days=1)
# Wednesday 2026-03-11 12:00 UTC: well after the 00:15 send time, far from any DST change.
NOON = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
TODAY = NOON.date()


def make_cfg(
    tmp_path: Path, port: int, *, to: bool = True, at: str = "00:15", tz: str = "UTC"
) -> config.Config:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    text = (
        f"[paths]\nstate_dir = {state}\n"
        f"[report]\n{'to = ' + ', '.join(TO) if to else ''}\nfrom = {SENDER}\n"
        f"time = {at}\ntimezone = {tz}\n"
        f"[smtp]\nhost = 127.0.0.1\nport = {port}\ntimeout = 2\n"
    )
    return config.loads(text, tmp_path / "mlsd.conf")


@dataclass
class Clock:
    """A settable wall clock (seconds since the epoch)."""

    now: float

    def __call__(self) -> float:
        return self.now

    def at(self, when: datetime) -> None:
        self.now = when.timestamp()


def message(day: date, partial: bool) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = SENDER, ", ".join(TO)
    msg["Subject"] = f"[mlsd] report {day}{' (so far)' if partial else ''}"
    msg["Message-ID"] = f"<report-{day}{'-so-far' if partial else ''}@mail.example>"
    msg.set_content(f"3 failed logins on {day}")
    return msg.as_bytes()


@dataclass
class Producer:
    """A fake `produce`: records what it was asked for; fails while `fail` has items."""

    cfg: config.Config
    calls: list[tuple[date, datetime | None]] = field(default_factory=list)
    fail: list[Exception] = field(default_factory=list)

    @property
    def days(self) -> list[date]:
        return [d for d, _ in self.calls]

    async def __call__(self, day: date, until: datetime | None) -> Rendered:
        self.calls.append((day, until))
        if self.fail:
            raise self.fail.pop(0)
        partial = until is not None
        return Rendered(
            day=day,
            partial=partial,
            subject=f"[mlsd] report {day}",
            text=f"report of {day}\n3 failed logins",
            html=f"<p>report of {day}: 3 failed logins</p>",
            events=3,
            message=message(day, partial),
            sender=self.cfg.report.sender,
            recipients=self.cfg.report.to,
        )


def new_sender(
    cfg: config.Config,
    clock: Clock,
    console: io.StringIO | None = None,
    first_day: date | None = None,
) -> tuple[ReportSender, Producer]:
    produce = Producer(cfg)
    sender = ReportSender(
        cfg,
        produce,
        clock=clock,
        console=console if console is not None else io.StringIO(),
        first_day=first_day,
    )
    return sender, produce


def tick(sender: ReportSender) -> None:
    asyncio.run(sender.tick())


def write_state(cfg: config.Config, day: date) -> None:
    (cfg.paths.state_dir / STATE_NAME).write_text(json.dumps({"last_queued": day.isoformat()}))


def read_state(cfg: config.Config) -> date | None:
    path = cfg.paths.state_dir / STATE_NAME
    if not path.exists():
        return None
    return date.fromisoformat(json.loads(path.read_text())["last_queued"])


def subjects(sink: smtpkit.Sink) -> list[str]:
    return sorted(str(sink.parsed(i)["Subject"]) for i in range(len(sink.messages)))


@pytest.fixture
def sink() -> Iterator[smtpkit.Sink]:
    yield smtpkit.Sink()


@pytest.fixture
def server(sink: smtpkit.Sink) -> Iterator[int]:
    """A running SMTP server; yields its port."""
    controller = smtpkit.start(sink)
    try:
        yield controller.port
    finally:
        controller.stop()


# ---- 1. catch-up after downtime


def test_catch_up_after_downtime_then_restart_sends_nothing_more(
    tmp_path: Path, sink: smtpkit.Sink, server: int
) -> None:
    """Last queued D-4, now after today's send time: D-3, D-2, D-1 built in order, each
    delivered once; a restart at the same instant builds and sends nothing."""
    cfg = make_cfg(tmp_path, server)
    write_state(cfg, TODAY - 4 * DAY)
    clock = Clock(NOON.timestamp())
    sender, produce = new_sender(cfg, clock)
    tick(sender)

    expected = [TODAY - 3 * DAY, TODAY - 2 * DAY, TODAY - DAY]
    assert [(d, None) for d in expected] == produce.calls
    assert [f"[mlsd] report {d}" for d in expected] == subjects(sink)
    assert all((SENDER, list(TO)) == (m[0], m[1]) for m in sink.messages)
    assert (3, "") == (sender.delivered, sender.pending_error)
    assert TODAY - DAY == sender.last_queued == read_state(cfg)
    assert [] == sender.outbox.entries()

    restarted, produce2 = new_sender(cfg, clock)
    assert TODAY - DAY == restarted.last_queued
    # The delivery time survives the restart (the metrics gauge; issue 21).
    assert NOON.timestamp() == sender.last_delivered_at == restarted.last_delivered_at
    tick(restarted)
    tick(restarted)
    assert [] == produce2.calls
    assert 3 == len(sink.messages)


# ---- 2. before and after today's send time


def test_a_fresh_state_has_no_delivery_time(tmp_path: Path) -> None:
    """Nothing delivered yet, or report.json from before it kept the time: no gauge value
    (never a made-up one)."""
    cfg = make_cfg(tmp_path, 1)
    write_state(cfg, TODAY - DAY)
    sender, _ = new_sender(cfg, Clock(NOON.timestamp()))
    assert sender.last_delivered_at is None


def test_before_send_time_the_day_before_yesterday_then_yesterday(
    tmp_path: Path, sink: smtpkit.Sink, server: int
) -> None:
    """A fresh install before 00:15 builds the day before yesterday only; 00:15 itself
    queues exactly yesterday, once."""
    cfg = make_cfg(tmp_path, server)
    send_at = datetime.combine(TODAY, time(0, 15), tzinfo=UTC)
    before = send_at - timedelta(seconds=1)
    assert TODAY - 2 * DAY == schedule.due_day(before, time(0, 15), UTC)
    assert TODAY - DAY == schedule.due_day(send_at, time(0, 15), UTC)

    clock = Clock(before.timestamp())
    sender, produce = new_sender(cfg, clock)
    tick(sender)
    assert [TODAY - 2 * DAY] == produce.days
    tick(sender)  # same instant: nothing new
    assert [TODAY - 2 * DAY] == produce.days
    assert 1 == len(sink.messages)

    clock.at(send_at)
    tick(sender)
    clock.at(send_at + timedelta(minutes=1))
    tick(sender)
    assert [TODAY - 2 * DAY, TODAY - DAY] == produce.days
    assert [(TODAY - 2 * DAY, None), (TODAY - DAY, None)] == produce.calls
    assert [f"[mlsd] report {TODAY - 2 * DAY}", f"[mlsd] report {TODAY - DAY}"] == subjects(sink)
    assert TODAY - DAY == read_state(cfg)


def test_fresh_install_first_report_is_its_first_day(
    tmp_path: Path, sink: smtpkit.Sink, server: int
) -> None:
    """First start today at noon: nothing for yesterday (never watched), now or at any
    later tick today; at 00:15 tomorrow, today's report, once, also across a restart."""
    cfg = make_cfg(tmp_path, server)
    clock = Clock(NOON.timestamp())
    sender, produce = new_sender(cfg, clock, first_day=TODAY)
    tick(sender)
    clock.at(NOON + timedelta(hours=11, minutes=59))
    tick(sender)
    assert ([], 0, None) == (produce.calls, len(sink.messages), read_state(cfg))

    clock.at(datetime.combine(TODAY + DAY, time(0, 15), tzinfo=UTC))
    tick(sender)
    assert [(TODAY, None)] == produce.calls
    assert [f"[mlsd] report {TODAY}"] == subjects(sink)
    restarted, produce2 = new_sender(cfg, clock, first_day=TODAY)
    tick(restarted)
    assert ([], 1) == (produce2.calls, len(sink.messages))


# ---- 3. the crash window between the outbox entry and report.json


@pytest.mark.parametrize("state", ["absent", "older"])
def test_outbox_entry_without_state_counts_as_queued(
    tmp_path: Path, sink: smtpkit.Sink, server: int, state: str
) -> None:
    """Crash after the entry was written, before report.json: D is not built again and the
    entry goes out once."""
    cfg = make_cfg(tmp_path, server)
    d = TODAY - DAY
    if state == "older":
        write_state(cfg, d - DAY)
    Outbox(cfg.paths.state_dir / "outbox").put(
        message(d, False), SENDER, TO, NOON.timestamp() - 60, tag=f"report:{d}"
    )
    clock = Clock(NOON.timestamp())
    sender, produce = new_sender(cfg, clock)
    assert d == sender.last_queued
    tick(sender)
    tick(sender)
    assert [] == produce.calls
    assert [f"[mlsd] report {d}"] == subjects(sink)
    assert (1, []) == (sender.delivered, sender.outbox.entries())


@pytest.mark.parametrize("state", ["absent", "older"])
def test_crash_window_day_stays_queued_after_delivery_and_restart(
    tmp_path: Path, sink: smtpkit.Sink, server: int, state: str
) -> None:
    """Crash window recovered, entry delivered, then one more restart (same day, same
    instant): the day must still count as queued — exactly one message in all."""
    cfg = make_cfg(tmp_path, server)
    d = TODAY - DAY
    if state == "older":
        write_state(cfg, d - DAY)
    Outbox(cfg.paths.state_dir / "outbox").put(
        message(d, False), SENDER, TO, NOON.timestamp() - 60, tag=f"report:{d}"
    )
    clock = Clock(NOON.timestamp())
    first, _ = new_sender(cfg, clock)
    tick(first)
    assert 1 == len(sink.messages)

    restarted, produce = new_sender(cfg, clock)
    recovered = restarted.last_queued
    tick(restarted)
    # Today: (None or D-1, [(D, None)], 2): D rebuilt and mailed a second time.
    assert (d, [], 1) == (recovered, produce.calls, len(sink.messages))


# ---- 4. server down: the report waits in the outbox


def test_server_down_waits_then_delivers_once(tmp_path: Path, sink: smtpkit.Sink) -> None:
    """Refused connection: queued and marked, entry kept with a future next attempt and
    pending_error set; server up + clock past next_attempt: delivered once; restart: no more."""
    port = smtpkit.free_port()
    cfg = make_cfg(tmp_path, port)
    t0 = NOON.timestamp()
    clock = Clock(t0)
    sender, produce = new_sender(cfg, clock)
    tick(sender)
    assert [TODAY - DAY] == produce.days
    assert TODAY - DAY == sender.last_queued == read_state(cfg)
    assert sender.pending_error
    (entry,) = sender.outbox.entries()
    assert (f"report:{TODAY - DAY}", 1, t0 + BACKOFF_FIRST) == (
        entry.tag,
        entry.attempts,
        entry.next_attempt,
    )
    assert entry.next_attempt > clock.now
    assert (cfg.paths.state_dir / "outbox" / f"{entry.id}.eml").exists()

    controller = smtpkit.start(sink, port=port)
    try:
        clock.now = t0 + BACKOFF_FIRST - 1  # not yet due: no attempt
        tick(sender)
        assert ([], 1) == (sink.messages, len(sender.outbox.entries()))

        clock.now = entry.next_attempt
        tick(sender)
        assert 1 == len(sink.messages)
        assert (1, "", []) == (sender.delivered, sender.pending_error, sender.outbox.entries())
        tick(sender)

        clock.now = t0 + 3600
        restarted, produce2 = new_sender(cfg, clock)
        tick(restarted)
    finally:
        controller.stop()
    assert [TODAY - DAY] == produce.days and [] == produce2.calls
    assert [f"[mlsd] report {TODAY - DAY}"] == subjects(sink)


def test_restart_while_server_down_keeps_the_entry_and_delivers_once(
    tmp_path: Path, sink: smtpkit.Sink
) -> None:
    """Down at report time, restarted while still down (the entry is retried, not rebuilt),
    then the server comes up: one message, and a later restart sends nothing."""
    port = smtpkit.free_port()
    cfg = make_cfg(tmp_path, port)
    t0 = NOON.timestamp()
    clock = Clock(t0)
    first, produce1 = new_sender(cfg, clock)
    tick(first)
    assert [TODAY - DAY] == produce1.days
    (entry,) = first.outbox.entries()

    clock.now = t0 + 10
    second, produce2 = new_sender(cfg, clock)
    assert TODAY - DAY == second.last_queued
    tick(second)  # nothing due yet
    assert [entry] == second.outbox.entries()
    clock.now = entry.next_attempt
    tick(second)  # due, still down: kept, backoff doubled
    (again,) = second.outbox.entries()
    assert (entry.id, 2, clock.now + 2 * BACKOFF_FIRST) == (
        again.id,
        again.attempts,
        again.next_attempt,
    )
    assert second.pending_error
    assert [] == produce2.calls

    controller = smtpkit.start(sink, port=port)
    try:
        clock.now = again.next_attempt
        third, produce3 = new_sender(cfg, clock)
        tick(third)
        assert (1, []) == (third.delivered, third.outbox.entries())
        clock.now += 3600
        fourth, produce4 = new_sender(cfg, clock)
        tick(fourth)
    finally:
        controller.stop()
    assert [] == produce3.calls == produce4.calls
    assert [f"[mlsd] report {TODAY - DAY}"] == subjects(sink)


# ---- 5. SIGUSR1


def test_request_now_is_extra_and_never_the_days_report(tmp_path: Path) -> None:
    """request_now builds (today, until=now) as partial; report.json is untouched and the
    outbox entry has no tag, so a restart still counts only the day's real report."""
    cfg = make_cfg(tmp_path, smtpkit.free_port())  # down: the entry stays to be looked at
    write_state(cfg, TODAY - DAY)
    state_path = cfg.paths.state_dir / STATE_NAME
    before = state_path.read_bytes()
    clock = Clock(NOON.timestamp())
    sender, produce = new_sender(cfg, clock)
    tick(sender)
    assert [] == produce.calls

    sender.request_now()
    tick(sender)
    assert [(TODAY, NOON)] == produce.calls
    assert UTC == produce.calls[0][1].tzinfo  # type: ignore[union-attr]
    (entry,) = sender.outbox.entries()
    assert "" == entry.tag
    assert b"(so far)" in sender.outbox.message(entry)
    assert before == state_path.read_bytes()
    assert TODAY - DAY == sender.last_queued

    tick(sender)  # asked once, built once
    assert 1 == len(produce.calls)
    restarted, produce2 = new_sender(cfg, clock)
    assert TODAY - DAY == restarted.last_queued
    tick(restarted)
    assert [] == produce2.calls


def test_request_now_delivers_beside_the_days_report(
    tmp_path: Path, sink: smtpkit.Sink, server: int
) -> None:
    """The day's report and a requested one: two messages, the day marked once."""
    cfg = make_cfg(tmp_path, server)
    clock = Clock(NOON.timestamp())
    sender, produce = new_sender(cfg, clock)
    sender.request_now()
    tick(sender)
    assert [(TODAY - DAY, None), (TODAY, NOON)] == produce.calls
    assert [f"[mlsd] report {TODAY - DAY}", f"[mlsd] report {TODAY} (so far)"] == subjects(sink)
    assert TODAY - DAY == read_state(cfg)


# ---- 6. no recipients


def test_no_recipients_writes_the_report_and_prints_it(tmp_path: Path) -> None:
    """Without [report] to: reports/report-D.txt and .html, the text on the console,
    nothing in the outbox, the day marked."""
    cfg = make_cfg(tmp_path, smtpkit.free_port(), to=False)
    console = io.StringIO()
    clock = Clock(NOON.timestamp())
    sender, produce = new_sender(cfg, clock, console)
    tick(sender)
    d = TODAY - DAY
    assert [(d, None)] == produce.calls
    reports = cfg.paths.state_dir / "reports"
    assert sorted([f"report-{d}.html", f"report-{d}.txt"]) == sorted(
        p.name for p in reports.iterdir()
    )
    assert f"report of {d}\n3 failed logins" == (reports / f"report-{d}.txt").read_text()
    assert f"<p>report of {d}: 3 failed logins</p>" == (reports / f"report-{d}.html").read_text()
    assert f"report of {d}\n3 failed logins\n" == console.getvalue()
    assert [] == sender.outbox.entries() and [] == sender.outbox.entries(failed=True)
    assert d == read_state(cfg)

    sender.request_now()
    tick(sender)
    assert (
        reports / f"report-{TODAY}-so-far.txt"
    ).read_text() == f"report of {TODAY}\n3 failed logins"
    assert d == read_state(cfg)


# ---- 7. a report that cannot be built


def test_build_failure_is_logged_and_retried_after_retry_build(
    tmp_path: Path,
) -> None:
    """produce raises: the day is not marked, the error is logged, no new attempt before
    RETRY_BUILD seconds; then it is built and marked."""
    cfg = make_cfg(tmp_path, smtpkit.free_port(), to=False)
    t0 = NOON.timestamp()
    clock = Clock(t0)
    sender, produce = new_sender(cfg, clock)
    produce.fail.append(OSError(28, "No space left on device"))
    d = TODAY - DAY
    with structlog.testing.capture_logs(processors=[structlog.processors.format_exc_info]) as said:
        tick(sender)
    assert [d] == produce.days
    assert (None, None) == (sender.last_queued, read_state(cfg))
    errors = [e for e in said if e["log_level"] == "error"]
    assert [("report could not be built or queued", d.isoformat(), 300)] == [
        (e["event"], e["day"], e["retry_s"]) for e in errors
    ]
    assert "No space left" in errors[0]["exception"]

    for later in (1.0, RETRY_BUILD / 2, RETRY_BUILD - 1):
        clock.now = t0 + later
        tick(sender)
    assert [d] == produce.days
    assert not (cfg.paths.state_dir / "reports").exists()

    clock.now = t0 + RETRY_BUILD
    tick(sender)
    assert [d, d] == produce.days
    assert d == sender.last_queued == read_state(cfg)
    assert (cfg.paths.state_dir / "reports" / f"report-{d}.txt").exists()
    clock.now += RETRY_BUILD
    tick(sender)
    assert [d, d] == produce.days


# ---- 8. refused for good


def test_permanent_refusal_is_set_aside_and_the_day_stays_queued(
    tmp_path: Path, sink: smtpkit.Sink, server: int
) -> None:
    """554 on DATA: the entry moves to outbox/failed, the day counts as queued, and no
    restart sends it again (not even one that lost report.json: the failed/ tag says so)."""
    sink.data_reply = "554 5.6.0 message refused"
    cfg = make_cfg(tmp_path, server)
    clock = Clock(NOON.timestamp())
    sender, produce = new_sender(cfg, clock)
    tick(sender)
    d = TODAY - DAY
    assert [d] == produce.days
    assert ([], 0, "") == (sender.outbox.entries(), sender.delivered, sender.pending_error)
    (failed,) = sender.outbox.entries(failed=True)
    assert f"report:{d}" == failed.tag and "554" in failed.last_error
    assert (sender.outbox.failed_dir / f"{failed.id}.eml").read_bytes() == message(d, False)
    assert d == sender.last_queued == read_state(cfg)

    sink.data_reply = None
    restarted, produce2 = new_sender(cfg, clock)
    tick(restarted)
    (cfg.paths.state_dir / STATE_NAME).unlink()
    lost_state, produce3 = new_sender(cfg, clock)
    assert d == lost_state.last_queued
    tick(lost_state)
    assert [] == produce2.calls == produce3.calls
    assert [] == sink.messages
    assert 1 == len(sender.outbox.entries(failed=True))


# ---- 9. DST


def test_send_time_skipped_by_spring_forward_fires_at_0300(
    tmp_path: Path, sink: smtpkit.Sink, server: int
) -> None:
    """Europe/Paris, 02:30 on 2026-03-29 does not exist: the 28th's report is queued at
    03:00 CEST (01:00 UTC), not a second earlier, and once."""
    paris = ZoneInfo("Europe/Paris")
    cfg = make_cfg(tmp_path, server, at="02:30", tz="Europe/Paris")
    spring = date(2026, 3, 29)
    send_at = schedule.wall_time(spring, time(2, 30), paris)
    assert datetime(2026, 3, 29, 3, 0, tzinfo=paris) == send_at
    assert datetime(2026, 3, 29, 1, 0, tzinfo=UTC) == send_at
    write_state(cfg, spring - 2 * DAY)

    clock = Clock(0.0)
    sender, produce = new_sender(cfg, clock)
    for before in (
        datetime(2026, 3, 29, 1, 59, tzinfo=paris),  # the last minute before the jump
        send_at - timedelta(seconds=1),
    ):
        clock.at(before)
        tick(sender)
    assert [] == produce.calls

    clock.at(send_at)
    tick(sender)
    clock.at(send_at + timedelta(minutes=30))
    tick(sender)
    assert [(spring - DAY, None)] == produce.calls
    assert [f"[mlsd] report {spring - DAY}"] == subjects(sink)


def test_send_time_repeated_by_fall_back_fires_once(
    tmp_path: Path, sink: smtpkit.Sink, server: int
) -> None:
    """Europe/Paris, 02:30 on 2026-10-25 happens twice: queued at the first (00:30 UTC)
    only; the second 02:30 (01:30 UTC) builds nothing."""
    paris = ZoneInfo("Europe/Paris")
    cfg = make_cfg(tmp_path, server, at="02:30", tz="Europe/Paris")
    fall = date(2026, 10, 25)
    send_at = schedule.wall_time(fall, time(2, 30), paris)
    assert datetime(2026, 10, 25, 0, 30, tzinfo=UTC) == send_at
    write_state(cfg, fall - 2 * DAY)

    clock = Clock((send_at - timedelta(seconds=1)).timestamp())
    sender, produce = new_sender(cfg, clock)
    tick(sender)
    assert [] == produce.calls
    for when in (send_at, send_at + timedelta(hours=1), send_at + timedelta(hours=2)):
        clock.at(when)
        tick(sender)
    assert [fall - DAY] == produce.days
    assert 1 == len(sink.messages)
