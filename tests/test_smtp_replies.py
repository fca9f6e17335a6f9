"""A hostile SMTP server's replies (issue 17, finding 6): untrusted text on every surface.

A real aiosmtpd server on loopback answers DATA with a multi-line 451 reply holding an OSC
title change, a screen clear and a line that looks like one of `mlsd status`'s own. The
reply must reach the outbox, `mlsd status` and the console log neutralised: no ESC, no BEL,
no extra line.
"""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from mlsd import config, logs
from mlsd.config import Config
from mlsd.report.outbox import Rendered, ReportSender
from tests import smtpkit
from tests.followkit import ENV, Env

HOSTILE_REPLY = (
    "451-4.3.0 busy\x1b]0;PWNED\x07\x1b[2J\r\n"
    "451 4.3.0 x\nproblem: forged by the server\u2028warning: too"
)
FORGED = "problem: forged by the server"


@pytest.fixture
def installed(tmp_path: Path) -> Iterator[tuple[Env, smtpkit.Sink, int]]:
    sink = smtpkit.Sink(data_reply=HOSTILE_REPLY)
    server = smtpkit.start(sink)
    port = server.port
    env = Env(tmp_path)
    env.extra = (
        "[report]\ntimezone = UTC\nto = admin@example.org\n"
        f"[smtp]\nhost = 127.0.0.1\nport = {port}\nsecurity = none\ntimeout = 5\n"
    )
    env.write_conf({})
    env.state.mkdir(mode=0o750)
    try:
        yield env, sink, port
    finally:
        server.stop()
        env.cleanup()
        logs.configure("WARNING", "console_plain", sys.stderr)


def message() -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "mlsd@example.org", "admin@example.org", "r"
    msg.set_content("report")
    return bytes(msg)


async def _unused_produce(*_: object) -> Rendered:
    raise AssertionError("no report is built in this test")


def assert_clean(text: str, where: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\u2028" not in text, where
    for line in text.splitlines():
        assert not line.lstrip("< 0123456789>").startswith(FORGED), f"{where}: {line!r}"


def test_hostile_reply_is_neutralised_in_outbox_log_and_status(
    installed: tuple[Env, smtpkit.Sink, int],
) -> None:
    """The reply is stored escaped in the outbox, logged on one line in the console format,
    and shown by `mlsd status` without a terminal escape or a forged line."""
    env, sink, _ = installed
    cfg: Config = config.load(env.conf)
    stream = io.StringIO()
    logs.configure("INFO", "console_plain", stream)
    sender = ReportSender(cfg, _unused_produce, console=io.StringIO())
    sender.outbox.put(message(), "mlsd@example.org", ["admin@example.org"], now=0.0)
    # One delivery round, as the sender's task runs it (tick would also schedule reports).
    asyncio.run(sender._deliver(1.0))
    assert [] == sink.messages

    (entry,) = sender.outbox.entries()
    assert entry.last_error.startswith("451 ")
    assert "PWNED" in entry.last_error  # kept, as visible text
    assert_clean(entry.last_error, "outbox")
    assert "\n" not in entry.last_error and "\n" not in sender.pending_error

    logged = stream.getvalue()
    assert_clean(logged, "console log")
    # Every line is a record of its own (aiosmtpd's included): none starts without a stamp.
    for line in logged.splitlines():
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[", line), line
    assert 1 == sum("report delivery failed" in line for line in logged.splitlines())

    res = subprocess.run(
        env.cmd("status"), capture_output=True, text=True, timeout=60, env=ENV, check=False
    )
    assert "last error: 451" in res.stdout, res.stdout + res.stderr
    assert_clean(res.stdout, "status")


def test_status_escapes_a_reply_stored_raw_by_an_older_version(
    installed: tuple[Env, smtpkit.Sink, int],
) -> None:
    """An outbox entry written before replies were escaped is still shown inert."""
    env, _, _ = installed
    cfg: Config = config.load(env.conf)
    sender = ReportSender(cfg, _unused_produce, console=io.StringIO())
    entry = sender.outbox.put(message(), "mlsd@example.org", ["admin@example.org"], now=0.0)
    sender.outbox.defer(entry, "451 " + HOSTILE_REPLY, 1.0, ["admin@example.org"])
    res = subprocess.run(
        env.cmd("status"), capture_output=True, text=True, timeout=60, env=ENV, check=False
    )
    assert "last error: 451" in res.stdout, res.stdout + res.stderr
    assert_clean(res.stdout, "status")
