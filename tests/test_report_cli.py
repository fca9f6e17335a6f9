"""`mlsd report`: print a day's report as text or HTML, or send it now; exit codes.

The CSV is made the real way: `mlsd scan` of MailLogSentinel's sample (28 failures on
2026-09-28), then `mlsd report` as a subprocess, sending to a real SMTP server on loopback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime
from email import message_from_bytes
from pathlib import Path

import pytest

from mlsd.watched import Ledger
from tests import smtpkit
from tests.followkit import ENV

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "tests/corpus/maillogsentinel/sample_sasl.log"
DAY = "2026-09-28"


def _mlsd(conf: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlsd", *args, "-c", str(conf)],
        capture_output=True, text=True, timeout=120, check=False, env=ENV,
    )  # fmt: skip


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    log = tmp_path / "mail.log"
    log.write_bytes(SAMPLE.read_bytes())
    # Classic stamps carry no year: the file's mtime says which one.
    when = datetime(2026, 9, 29, 12, 0).timestamp()
    os.utime(log, (when, when))
    path = tmp_path / "mlsd.conf"
    path.write_text(
        f"[paths]\nmail_log = {log}\ncsv = {tmp_path / 'mlsd.csv'}\n"
        f"state_dir = {tmp_path / 'state'}\n[source]\ntimezone = UTC\n"
        "[report]\ntimezone = UTC\nto = admin@example.org\nfrom = mlsd@example.org\n"
        "[smtp]\nhost = 127.0.0.1\nport = 9\ntimeout = 2\n"
    )
    res = _mlsd(path, "scan")
    assert res.returncode == 0, res.stderr
    return path


def _with_port(conf: Path, port: int) -> None:
    conf.write_text(conf.read_text().replace("port = 9\n", f"port = {port}\n"))


def test_text_and_html(conf: Path) -> None:
    res = _mlsd(conf, "report", "--day", DAY)
    assert res.returncode == 0, res.stderr
    assert "28 failed attempts" in res.stdout
    assert max(len(line) for line in res.stdout.splitlines()) <= 78
    res = _mlsd(conf, "report", "--day", DAY, "--html")
    assert res.returncode == 0, res.stderr
    assert res.stdout.lstrip().lower().startswith("<!doctype html>")
    assert "<script" not in res.stdout.lower()


def test_send_delivers_and_exits_zero(conf: Path) -> None:
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        _with_port(conf, server.port)
        res = _mlsd(conf, "report", "--day", DAY, "--send")
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr
    assert "delivered to admin@example.org" in res.stderr
    assert len(sink.messages) == 1
    mail_from, rcpt, data = sink.messages[0]
    assert (mail_from, rcpt) == ("mlsd@example.org", ["admin@example.org"])
    msg = message_from_bytes(data)
    assert DAY in msg["Subject"]
    names = [p.get_filename() for p in msg.walk() if p.get_filename()]
    assert names == [f"mlsd-{DAY}.csv"]


def test_send_fails_loudly_when_the_server_is_down(conf: Path) -> None:
    _with_port(conf, smtpkit.free_port())  # nothing listens there
    res = _mlsd(conf, "report", "--day", DAY, "--send")
    assert res.returncode == 1
    assert "NOT delivered" in res.stderr or "not sent" in res.stderr


def test_send_refused_recipient_exits_one(conf: Path) -> None:
    sink = smtpkit.Sink(refuse={"admin@example.org": "550 5.1.1 no such user"})
    server = smtpkit.start(sink)
    try:
        _with_port(conf, server.port)
        res = _mlsd(conf, "report", "--day", DAY, "--send")
    finally:
        server.stop()
    assert res.returncode == 1
    assert "550" in res.stderr
    assert sink.messages == []


def test_a_day_not_begun_is_a_usage_error(conf: Path) -> None:
    res = _mlsd(conf, "report", "--day", "2999-01-01")
    assert res.returncode == 2
    assert "not begun" in res.stderr
    res = _mlsd(conf, "report", "--day", "tomorrow")  # today, yesterday and -N are days
    assert res.returncode == 2
    assert "YYYY-MM-DD, today, yesterday or -N" in res.stderr


def test_report_of_the_first_start_day_says_partial(conf: Path) -> None:
    """`mlsd report` reads the daemon's first start from coverage.json like the daemon does:
    the day it started says so; the day before does not."""
    Ledger(conf.parent / "state").note_first_start(
        date(2026, 9, 28), datetime(2026, 9, 28, 7, 45, tzinfo=UTC), "end"
    )
    res = _mlsd(conf, "report", "--day", DAY)
    assert res.returncode == 0, res.stderr
    assert "partial: mlsd started at 07:45" in res.stdout
    before = _mlsd(conf, "report", "--day", "2026-09-27")
    assert before.returncode == 0, before.stderr
    assert "partial" not in before.stdout
