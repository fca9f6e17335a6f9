"""Alert mail through the report's outbox, to a real SMTP server on loopback: delivered
within seconds of `raise_alerts`, retried when refused (and never logged as delivered
before the server accepted it), queued once across a crash and a replayed batch."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from mlsd import alertlog, config, logs
from mlsd.alerts import Alert, Rule
from mlsd.report.alertsend import AlertMailer
from mlsd.report.outbox import Rendered, ReportSender
from mlsd.report.smtp import BACKOFF_FIRST
from tests import smtpkit
from tests.alertkit import make_cfg, plain


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


async def no_report(day: date, until: datetime | None) -> Rendered:
    raise AssertionError(f"no report is due in these tests (asked for {day})")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("INFO", "json", stream)
    yield stream
    logs.configure("WARNING", "console_plain", io.StringIO())


def events(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def wired(cfg: config.Config, clock: Clock | None = None) -> tuple[ReportSender, AlertMailer]:
    tick = clock if clock is not None else time.time
    today = datetime.fromtimestamp(tick(), UTC).date()
    sender = ReportSender(cfg, no_report, clock=tick, first_day=today)
    return sender, AlertMailer(cfg, sender, hostname="mx1", clock=tick)


def subject(raw: bytes) -> str:
    return str(make_header(decode_header(message_from_bytes(raw)["Subject"])))


def test_an_alert_is_mailed_within_seconds_of_being_raised(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """The daemon's sender task runs; `raise_alerts` queues the mail and wakes delivery:
    the server has it within 5 s (the report's tick sleeps up to a minute), the outbox is
    empty, the journal and the counters have the alert once, and the log says so."""
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        cfg = make_cfg(tmp_path, port=server.port)

        async def scenario() -> float:
            sender, mailer = wired(cfg)
            task = asyncio.create_task(sender.run())
            await asyncio.sleep(0.2)  # the sender is asleep until its next minute
            started = time.monotonic()
            mailer.raise_alerts([plain(0)])
            while not sink.messages and time.monotonic() - started < 5:
                await asyncio.sleep(0.05)
            took = time.monotonic() - started
            await asyncio.sleep(0.2)
            assert [] == sender.outbox.entries()
            assert 1 == mailer.today() and {"new_country": 1} == dict(mailer.counts.by_rule)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return took

        took = asyncio.run(scenario())
    finally:
        server.stop()
    assert took < 5
    ((mail_from, rcpt, raw),) = sink.messages
    assert ("mlsd@mx1.example.org", ["admin@example.org"]) == (mail_from, rcpt)
    assert "[mlsd] ALERT mx1: possible compromise of alice@example.org (new country SE)" == subject(
        raw
    )
    assert [plain(0)] == alertlog.read(tmp_path / "state" / "alerts.jsonl")
    said = events(log_stream)
    (warning,) = [e for e in said if e["event"] == "possible compromise"]
    keys = ("level", "rule", "user", "ip", "server", "alert", "headline")
    assert {
        "level": "warning",
        "rule": "new_country",
        "user": "alice@example.org",
        "ip": "198.51.100.23",
        "server": "mx1",
        "alert": plain(0).id,
        "headline": "new country SE",
    } == {k: warning[k] for k in keys}
    assert any(
        e["event"] == "alert mail delivered" and e["mail"] == f"alert:{plain(0).id}" for e in said
    )


def test_a_refused_alert_mail_is_retried_and_not_reported_sent(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    """451 at DATA: the mail stays in the outbox with its next attempt, nothing says it was
    delivered; once the server accepts it (next attempt due) it is delivered once."""
    sink = smtpkit.Sink(data_reply="451 4.3.0 try again later")
    server = smtpkit.start(sink)
    clock = Clock(datetime(2026, 11, 24, 9, 31, tzinfo=UTC).timestamp())
    try:
        cfg = make_cfg(tmp_path, port=server.port)

        async def scenario() -> None:
            sender, mailer = wired(cfg, clock)
            mailer.raise_alerts([plain(0)])
            await sender.tick()
            (waiting,) = sender.outbox.entries()
            assert (f"alert:{plain(0).id}", 1) == (waiting.tag, waiting.attempts)
            assert waiting.next_attempt == clock.now + BACKOFF_FIRST
            assert "451" in waiting.last_error
            clock.now += 10
            await sender.tick()  # not due yet: not tried again
            assert 1 == sender.outbox.entries()[0].attempts
            sink.data_reply = None
            clock.now += BACKOFF_FIRST
            await sender.tick()
            assert [] == sender.outbox.entries()

        asyncio.run(scenario())
    finally:
        server.stop()
    assert 1 == len(sink.messages)
    said = [str(e["event"]) for e in events(log_stream)]
    delivered = [i for i, e in enumerate(said) if e.startswith("alert mail delivered")]
    failed = [i for i, e in enumerate(said) if e.startswith("alert mail delivery failed")]
    assert len(delivered) == 1 and len(failed) == 1 and failed[0] < delivered[0]
    assert not any(e.startswith("report delivered") for e in said)


def test_a_permanent_refusal_is_set_aside_and_said(tmp_path: Path, log_stream: io.StringIO) -> None:
    sink = smtpkit.Sink(refuse={"admin@example.org": "550 5.1.1 no such user"})
    server = smtpkit.start(sink)
    try:
        cfg = make_cfg(tmp_path, port=server.port)

        async def scenario() -> None:
            sender, mailer = wired(cfg)
            mailer.raise_alerts([plain(0)])
            await sender.tick()
            assert [] == sender.outbox.entries()
            (failed,) = sender.outbox.entries(failed=True)
            assert f"alert:{plain(0).id}" == failed.tag

        asyncio.run(scenario())
    finally:
        server.stop()
    said = [str(e["event"]) for e in events(log_stream)]
    assert any(e.startswith("alert mail not delivered") for e in said)
    assert not any("delivered alert:" in e for e in said if "not delivered" not in e)


def test_a_crash_between_queue_and_journal_does_not_mail_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mail is queued, then the process dies before the journal line: the replayed
    batch raises the same alert; it is recorded, not queued again. A later replay (the
    alert in the journal) does nothing at all."""
    cfg = make_cfg(tmp_path, port=smtpkit.free_port())
    sender, mailer = wired(cfg)

    def die(alerts: list[Alert]) -> None:
        raise SystemExit("killed between the outbox and the journal")

    monkeypatch.setattr(mailer.journal, "append", die)
    with pytest.raises(SystemExit):
        mailer.raise_alerts([plain(0)])
    monkeypatch.undo()
    assert [] == alertlog.read(tmp_path / "state" / "alerts.jsonl")

    sender, mailer = wired(cfg)  # the restart
    other = plain(1, rule=Rule.SUCCESS_AFTER_FAILURES, headline="12 failures then a login")
    mailer.raise_alerts([plain(0), other])
    mailer.raise_alerts([plain(0), other])
    tags = sorted(e.tag for e in sender.outbox.entries())
    assert sorted(f"alert:{a.id}" for a in (plain(0), other)) == tags
    assert [plain(0), other] == alertlog.read(tmp_path / "state" / "alerts.jsonl")
    assert 2 == mailer.today()


def test_without_recipients_alerts_are_recorded_and_logged_not_mailed(
    tmp_path: Path, log_stream: io.StringIO
) -> None:
    cfg = config.loads(f"[paths]\nstate_dir = {tmp_path / 'state'}\n", tmp_path / "mlsd.conf")
    sender, mailer = wired(cfg)
    mailer.raise_alerts([plain(0)])
    assert [] == sender.outbox.entries()
    assert [plain(0)] == alertlog.read(tmp_path / "state" / "alerts.jsonl")
    assert ["possible compromise"] == [
        e["event"] for e in events(log_stream) if e["level"] == "warning"
    ]


def test_sentinel_to_gets_the_alert_and_the_outbox_delivers_to_it(tmp_path: Path) -> None:
    """`[sentinel] to` replaces `[report] to` for alerts, and delivery (which sends only to
    the configured recipients) accepts it."""
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        cfg = make_cfg(tmp_path, "[sentinel]\nto = sec@example.org\n", port=server.port)

        async def scenario() -> None:
            sender, mailer = wired(cfg)
            mailer.raise_alerts([plain(0)])
            await sender.tick()

        asyncio.run(scenario())
    finally:
        server.stop()
    ((_, rcpt, raw),) = sink.messages
    assert ["sec@example.org"] == rcpt
    assert "sec@example.org" == message_from_bytes(raw)["To"]


def test_reconfigure_applies_to_the_next_alert(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path, port=smtpkit.free_port())
    sender, mailer = wired(cfg)
    mailer.reconfigure(make_cfg(tmp_path, "[sentinel]\nto = night@example.org\n"))
    mailer.raise_alerts([plain(0)])
    (entry,) = sender.outbox.entries()
    assert ("night@example.org",) == entry.recipients


def test_a_journal_that_cannot_be_written_is_an_error_line_not_a_stop(
    tmp_path: Path, log_stream: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk under the journal: `raise_alerts` returns (the follower goes on), the
    mail is queued, the alert counted, and the log says what was not written."""
    cfg = make_cfg(tmp_path, port=smtpkit.free_port())
    sender, mailer = wired(cfg)

    def full(alerts: list[Alert]) -> None:
        raise OSError(28, "No space left on device", str(mailer.journal.path))

    monkeypatch.setattr(mailer.journal, "append", full)
    mailer.raise_alerts([plain(0)])
    assert [f"alert:{plain(0).id}"] == [e.tag for e in sender.outbox.entries()]
    assert 1 == mailer.today()
    (error,) = [e for e in events(log_stream) if e["level"] == "error"]
    assert "alerts journal not written" == error["event"]
    assert "No space left on device" in str(error["error"])
