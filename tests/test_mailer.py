"""Delivery through a real SMTP server on loopback: TLS, AUTH, refusals, outage, restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mlsd.config import Secret, Security, SmtpConfig
from mlsd.report.smtp import Outbox, deliver_due
from tests import smtpkit

# aiosmtpd warns when AUTH is required without STARTTLS; our implicit-TLS server is TLS.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

SENDER, TO = "mlsd@mail.example", ("admin@example.org", "sec@example.org")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return smtpkit.make_cert(tmp_path_factory.mktemp("tls"))


def message(subject: str = "[mlsd] report") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = SENDER, ", ".join(TO), subject
    msg["Message-ID"] = "<test@mail.example>"
    msg.set_content("42 failed logins")
    return msg.as_bytes()


def deliver(outbox: Outbox, cfg: SmtpConfig, now: float) -> list[str]:
    return [d.state for d in asyncio.run(deliver_due(outbox, cfg, now, TO))]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox")


@pytest.fixture
def sink() -> Iterator[smtpkit.Sink]:
    yield smtpkit.Sink()


@pytest.mark.parametrize(("mode", "auth"), [("none", False), ("starttls", True), ("tls", True)])
def test_delivered_once_over_each_security_mode(
    outbox: Outbox, sink: smtpkit.Sink, cert: tuple[Path, Path], mode: Security, auth: bool
) -> None:
    """Plain, STARTTLS and implicit TLS (with AUTH) deliver the message once, outbox empty."""
    server = smtpkit.start(sink, mode=mode, cert=cert, auth=auth)
    try:
        cfg = SmtpConfig(
            host="127.0.0.1",
            port=server.port,
            security=mode,
            username=smtpkit.USER if auth else "",
            password=Secret(smtpkit.PASSWORD) if auth else None,
            ca_file=cert[0],
            timeout=5,
        )
        outbox.put(message(), SENDER, TO, now=1000.0)
        assert ["delivered"] == deliver(outbox, cfg, 1000.0)
    finally:
        server.stop()
    assert [(SENDER, list(TO))] == [(m[0], m[1]) for m in sink.messages]
    assert "[mlsd] report" == sink.parsed()["Subject"]
    assert [] == outbox.entries()


def test_untrusted_certificate_is_not_delivered(
    outbox: Outbox, sink: smtpkit.Sink, cert: tuple[Path, Path]
) -> None:
    """Without the CA, a self-signed server is refused: the message waits, not sent."""
    server = smtpkit.start(sink, mode="starttls", cert=cert)
    try:
        cfg = SmtpConfig(host="127.0.0.1", port=server.port, security="starttls", timeout=5)
        outbox.put(message(), SENDER, TO, now=0.0)
        assert ["retry"] == deliver(outbox, cfg, 0.0)
    finally:
        server.stop()
    assert [] == sink.messages and 1 == len(outbox.entries())


def test_server_down_then_up_delivers_once_across_a_restart(
    tmp_path: Path, sink: smtpkit.Sink
) -> None:
    """Down at report time → waits with backoff → (restart) → server up → delivered once."""
    port = smtpkit.free_port()
    cfg = SmtpConfig(host="127.0.0.1", port=port, timeout=2)
    first = Outbox(tmp_path / "outbox")
    first.put(message(), SENDER, TO, now=0.0)
    assert ["retry"] == deliver(first, cfg, 0.0)
    (entry,) = first.entries()
    assert (1, 60.0) == (entry.attempts, entry.next_attempt)
    assert [] == deliver(first, cfg, 30.0)  # not due yet: no attempt
    assert ["retry"] == deliver(first, cfg, 60.0)
    assert 180.0 == first.entries()[0].next_attempt  # backoff doubled

    server = smtpkit.start(sink, port=port)
    try:
        restarted = Outbox(tmp_path / "outbox")  # a new process reads the same directory
        assert ["delivered"] == deliver(restarted, cfg, 180.0)
        assert [] == deliver(restarted, cfg, 10_000.0)
    finally:
        server.stop()
    assert 1 == len(sink.messages)


def test_permanent_failure_is_kept_for_inspection(outbox: Outbox, sink: smtpkit.Sink) -> None:
    """A 5xx on DATA is not retried and not reported as sent: the message is in failed/."""
    sink.data_reply = "554 5.6.0 message refused"
    server = smtpkit.start(sink)
    try:
        cfg = SmtpConfig(host="127.0.0.1", port=server.port, timeout=5)
        entry = outbox.put(message(), SENDER, TO, now=0.0)
        assert ["failed"] == deliver(outbox, cfg, 0.0)
    finally:
        server.stop()
    assert [] == outbox.entries()
    assert (outbox.failed_dir / f"{entry.id}.eml").read_bytes() == message()


def test_partial_refusal_retries_only_the_deferred_recipient(
    outbox: Outbox, sink: smtpkit.Sink
) -> None:
    """One recipient 450, the other accepted: only the 450 one is retried, then delivered."""
    sink.refuse = {TO[1]: "450 4.2.0 mailbox busy"}
    server = smtpkit.start(sink)
    try:
        cfg = SmtpConfig(host="127.0.0.1", port=server.port, timeout=5)
        outbox.put(message(), SENDER, TO, now=0.0)
        assert ["retry"] == deliver(outbox, cfg, 0.0)
        assert (TO[1],) == outbox.entries()[0].recipients
        sink.refuse = {}
        assert ["delivered"] == deliver(outbox, cfg, 100.0)
    finally:
        server.stop()
    assert [[TO[0]], [TO[1]]] == [m[1] for m in sink.messages]


def test_permanently_refused_recipient_is_reported_not_hidden(
    outbox: Outbox, sink: smtpkit.Sink
) -> None:
    """550 for one recipient: the other gets it; the refusal is kept, not called success."""
    sink.refuse = {TO[1]: "550 5.1.1 no such user"}
    server = smtpkit.start(sink)
    try:
        cfg = SmtpConfig(host="127.0.0.1", port=server.port, timeout=5)
        entry = outbox.put(message(), SENDER, TO, now=0.0)
        assert ["partial"] == deliver(outbox, cfg, 0.0)
    finally:
        server.stop()
    assert [[TO[0]]] == [m[1] for m in sink.messages]
    assert "550 5.1.1 no such user" in (outbox.failed_dir / f"{entry.id}.json").read_text()


def test_retry_time_over_sets_the_message_aside(tmp_path: Path) -> None:
    """After retry_hours of failures the message moves to failed/ (and stays there)."""
    cfg = SmtpConfig(host="127.0.0.1", port=smtpkit.free_port(), timeout=1, retry_hours=1)
    outbox = Outbox(tmp_path / "outbox")
    outbox.put(message(), SENDER, TO, now=0.0)
    assert ["failed"] == deliver(outbox, cfg, 3600.0)
    assert [] == outbox.entries() and 1 == len(list(outbox.failed_dir.glob("*.eml")))


def test_wrong_password_is_a_permanent_failure_and_never_logged(
    outbox: Outbox, sink: smtpkit.Sink, cert: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """535 on AUTH: kept in failed/; the password appears nowhere in the outbox or logs."""
    server = smtpkit.start(sink, mode="tls", cert=cert, auth=True)
    try:
        cfg = SmtpConfig(
            host="127.0.0.1", port=server.port, security="tls", username=smtpkit.USER,
            password=Secret("wrong-Pa55word"), ca_file=cert[0], timeout=5,
        )  # fmt: skip
        entry = outbox.put(message(), SENDER, TO, now=0.0)
        assert ["failed"] == deliver(outbox, cfg, 0.0)
    finally:
        server.stop()
    stored = (outbox.failed_dir / f"{entry.id}.json").read_text()
    assert "535" in stored and "wrong-Pa55word" not in stored + caplog.text
