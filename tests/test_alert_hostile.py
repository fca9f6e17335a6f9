"""Hostile alerts (tests/hostile/alerts.jsonl) through every surface that shows an alert:
the alert mail, the warning log line, `mlsd alerts` (table and JSON), and the daily
report's "Possible compromises" section (text and HTML). Checked on raw bytes with the
report's hostile-input rules (tests/test_hostile.py: `assert_inert`)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from mlsd import config, logs
from mlsd.alertlog import AlertLog
from mlsd.alerts import Alert
from mlsd.report import alertmail, alertsend
from mlsd.report.alertsection import section
from mlsd.report.html import render_html
from mlsd.report.outbox import Rendered, ReportSender
from mlsd.report.text import WIDTH, render_text
from tests.alertkit import README_ALERT, hostile, hostile_cases, make_cfg, plain
from tests.test_hostile import assert_inert, mlsd

CASES = hostile_cases()
IDS = [c["id"] for c in CASES]
NOW = datetime(2026, 11, 24, 9, 31, tzinfo=UTC)
HEADERS = {
    "subject",
    "from",
    "to",
    "date",
    "message-id",
    "auto-submitted",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
}
SUBJECT_MAX = len("[mlsd] ALERT : possible compromise of  ()") + 3 * 64
"""Three capped values (server, user, headline) and mlsd's words."""


def mail(alert: Alert, tmp_path: Path) -> tuple[bytes, Message]:
    data, _, _ = alertmail.to_message(
        alert, make_cfg(tmp_path), now=NOW, mail_host="mx1.example.org"
    )
    return data, message_from_bytes(data)


def decoded_subject(msg: Message) -> str:
    return str(make_header(decode_header(msg["Subject"])))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_alert_mail_is_inert_and_adds_no_header(case: dict[str, Any], tmp_path: Path) -> None:
    """ASCII on the wire, one Subject, only mlsd's headers, the decoded subject one inert
    capped line, the body inert and within 78 columns."""
    data, msg = mail(hostile(case), tmp_path)
    assert data.isascii()
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    names = [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line[:1] != " "]
    assert sorted(HEADERS) == sorted(names)
    subject = decoded_subject(msg)
    assert_inert(subject.encode(), "subject")
    assert "\n" not in subject and subject.startswith("[mlsd] ALERT ")
    assert len(subject) <= SUBJECT_MAX
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes)
    lines = body.split(b"\r\n")  # the mail's own line end; a lone CR or LF is not
    assert_inert(b"\n".join(lines), "body")
    assert b"" == lines[-1] and max(len(line.decode()) for line in lines) <= WIDTH


def test_the_issue_subject_and_a_body_an_admin_can_act_on(tmp_path: Path) -> None:
    _, msg = mail(plain(0), tmp_path)
    assert (
        "[mlsd] ALERT mx1: possible compromise of alice@example.org (new country SE)"
        == msg["Subject"]
    )
    body = msg.get_payload(decode=True)
    assert isinstance(body, bytes)
    text = body.decode()
    for expected in (
        "Possible compromise of alice@example.org on mx1",
        "When      2026-11-24 09:30:05 UTC (log time)",
        "From      198.51.100.23, SE, AS64500 Example Net AB",
        "  usual countries  DE (212 logins, last 2026-11-23 18:02)",
        "  history_days      30",
        "ignore_networks",
        "check_sasl_access",
        "deny = yes",
        plain(0).id,
    ):
        assert expected in text
    assert ("admin@example.org", "mlsd@mx1.example.org") == (msg["To"], msg["From"])
    assert msg["Message-ID"].startswith("<") and "mlsd-alert" in msg["Message-ID"]


def test_crlf_in_the_user_is_text_in_the_subject_not_a_header(tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c["id"] == "user-crlf-bcc"]
    _, msg = mail(hostile(case), tmp_path)
    assert msg["Bcc"] is None
    assert "alice@example.org\\x0d\\x0aBcc: victim@example.com" in decoded_subject(msg)


def test_non_ascii_is_an_encoded_word_that_reads_back(tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c["id"] == "aso-non-ascii"]
    data, msg = mail(hostile(case), tmp_path)
    assert b"Subject: [mlsd] ALERT mx1: possible compromise of =?utf-8?" in data
    assert (
        "[mlsd] ALERT mx1: possible compromise of jürgen@example.org "
        "(new network AS64500 Ωmega München)" == decoded_subject(msg)
    )


def test_a_literal_encoded_word_does_not_decode_into_a_header(tmp_path: Path) -> None:
    (case,) = [c for c in CASES if c["id"] == "user-encoded-word"]
    _, msg = mail(hostile(case), tmp_path)
    assert msg["Bcc"] is None
    assert_inert(decoded_subject(msg).encode(), "subject")


@pytest.mark.parametrize("fmt", ["journal", "json", "console_plain"])
def test_the_warning_line_is_one_inert_line_per_alert(
    fmt: logs.Format, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(alertsend, "mail_hostname", lambda short: short)
    cfg = config.loads(f"[paths]\nstate_dir = {tmp_path / 'state'}\n", tmp_path / "c.conf")

    async def no_report(*_: object) -> Rendered:
        raise AssertionError

    mailer = alertsend.AlertMailer(cfg, ReportSender(cfg, no_report), hostname="mx1")
    stream = io.StringIO()
    logs.configure("WARNING", fmt, stream)
    try:
        mailer.raise_alerts([hostile(c) for c in CASES])
    finally:
        logs.configure("WARNING", "console_plain", io.StringIO())
    out = stream.getvalue()
    assert_inert(out.encode(), f"log {fmt}")
    assert len(CASES) == out.count("\n")
    assert all(len(line) < 1200 for line in out.splitlines())


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A config file whose state directory holds every hostile alert."""
    tmp = tmp_path_factory.mktemp("alerts")
    state = tmp / "state"
    state.mkdir(mode=0o750)
    log = AlertLog(state)
    log.open()
    assert len(CASES) == len(log.record([hostile(c) for c in CASES]))
    conf = tmp / "mlsd.conf"
    conf.write_text(f"[paths]\nstate_dir = {state}\n[report]\ntimezone = UTC\n")
    return conf


def test_mlsd_alerts_table_is_inert(journal: Path) -> None:
    done = mlsd("alerts", "-c", str(journal))
    assert (0, b"") == (done.returncode, done.stderr)
    assert_inert(done.stdout, "mlsd alerts")
    assert 1 + len(CASES) == done.stdout.count(b"\n")
    assert b"\\x1b]0;pwned\\x07mx1" in done.stdout


def test_mlsd_alerts_json_is_ascii_and_gives_back_the_raw_values(journal: Path) -> None:
    done = mlsd("alerts", "-c", str(journal), "--json")
    assert (0, b"") == (done.returncode, done.stderr)
    assert done.stdout.isascii()
    assert_inert(done.stdout, "mlsd alerts --json")
    back = [Alert.from_json(json.loads(line)) for line in done.stdout.splitlines()]
    assert [hostile(c) for c in CASES] == back


def test_the_report_section_is_inert_in_text_and_html() -> None:
    found = [hostile(c) for c in CASES]
    sections = [section(found, UTC, top=100)]
    text = render_text("t", [("k", "v")], sections)
    html = render_html("t", [("k", "v")], sections)
    assert_inert(text.encode(), "report text")
    assert_inert(html.encode(), "report html")
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;@example.org" in html
    assert 1 + 1 + len(found) == html.count("<tr")  # the header's, the section's head, rows
    assert max(len(line) for line in text.splitlines()) <= WIDTH


def test_the_readme_example_is_what_the_code_renders(tmp_path: Path) -> None:
    """README, "Sentinel": the example alert mail is `alertmail.render` of README_ALERT."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start = readme.index("```\nSubject: [mlsd] ALERT ") + len("```\n")
    shown = readme[start : readme.index("```", start)]
    cfg = config.loads(
        "[report]\nto = postmaster@example.org\ntimezone = Europe/Berlin\n", tmp_path / "c"
    )
    r = alertmail.render(README_ALERT, cfg)
    assert f"Subject: {r.subject}\n\n{r.text}" == shown
