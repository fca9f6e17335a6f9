"""`mlsd report --fleet`: one day's fleet report, from the fleet's PostgreSQL ([fleet] url).

It connects as the shipper does (the url, the password from `[fleet] password_file`), reads
only aggregates (mlsd.fleet.report) and prints them as text (mlsd.fleet.report_text), or
mails that text now (`--send`: a text/plain mail through [smtp] to [report] to), or
prints it as a minimal HTML page (`--html`: the same text in a <pre>; no charts yet).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, time, timedelta

from mlsd.app.cmd_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_config
from mlsd.app.cmd_report import FIRST_DAY
from mlsd.config import Config


def run(args: argparse.Namespace) -> int:
    """`mlsd report --fleet [--day D] [--text]`."""
    import psycopg  # noqa: PLC0415 - only this command needs it
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415

    from mlsd import logs  # noqa: PLC0415
    from mlsd.fleet import report, report_text  # noqa: PLC0415
    from mlsd.fleet.pgsink import describe  # noqa: PLC0415

    cfg = load_config(args, required=True)
    logs.configure("WARNING", "auto", sys.stderr)
    if args.how == "send" and not cfg.report.to:
        sys.stderr.write(f"mlsd: {cfg.source_file}: [report] to: no recipients to send to\n")
        return EXIT_USAGE
    if not cfg.fleet.url:
        sys.stderr.write(
            f"mlsd: {cfg.source_file}: [fleet] url is not set: --fleet reads the fleet's "
            "PostgreSQL\n"
        )
        return EXIT_USAGE
    tz = cfg.report_tz()
    now = datetime.now(UTC)
    today = now.astimezone(tz).date()
    asked: date | int = 1 if args.day is None else args.day
    day = today - timedelta(days=asked) if isinstance(asked, int) else asked
    if day < FIRST_DAY or day > today:
        sys.stderr.write(f"mlsd: {day} is not a day the fleet can have rows of (in {tz})\n")
        return EXIT_USAGE
    # Midnight to midnight in the zone (a DST day is 23 or 25 hours long).
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    conninfo = cfg.fleet.url
    if cfg.fleet.password is not None:
        conninfo = make_conninfo(conninfo, password=cfg.fleet.password.reveal())
    target = describe(cfg.fleet.url)
    try:
        with psycopg.connect(
            conninfo, autocommit=True, prepare_threshold=None, connect_timeout=10,
            application_name="mlsd report",
        ) as conn:  # fmt: skip
            conn.execute("SET default_transaction_read_only = on")  # it only reads
            built = report.build(conn, day, start, end, now=now)
    except psycopg.errors.InsufficientPrivilege as e:
        sys.stderr.write(
            f"mlsd: {target}: this role may not read the fleet's tables ({e.diag.message_primary}"
            "): the fleet report needs a role with SELECT on mlsd_events and mlsd_positions, "
            "such as the owner\n"
        )
        return EXIT_FAILURE
    except psycopg.errors.UndefinedTable:
        sys.stderr.write(f"mlsd: {target}: no mlsd_events table: no node has shipped yet\n")
        return EXIT_FAILURE
    except psycopg.Error as e:
        sys.stderr.write(f"mlsd: {target}: {e.__class__.__name__}: {e}\n")
        return EXIT_FAILURE
    text = report_text.render(built, tz)
    if args.how == "text":
        sys.stdout.write(text)
        return EXIT_OK
    if args.how == "html":
        sys.stdout.write(report_text.html_page(text, f"mlsd fleet report for {day}"))
        return EXIT_OK
    subject = f"mlsd fleet report for {day}" + (" (so far)" if built.partial else "")
    if built.behind():
        subject += f": {len(built.behind())} server(s) may be behind"
    return send(cfg, subject, text, now)


def send(cfg: Config, subject: str, text: str, now: datetime) -> int:
    """Mail the text now through [smtp] to [report] to; exit 1 unless all accepted it."""
    import asyncio  # noqa: PLC0415
    import socket  # noqa: PLC0415
    from email.message import EmailMessage  # noqa: PLC0415
    from email.policy import SMTP  # noqa: PLC0415
    from email.utils import format_datetime, make_msgid  # noqa: PLC0415

    from mlsd.report.mailname import mail_hostname  # noqa: PLC0415
    from mlsd.report.smtp import Entry, send_once  # noqa: PLC0415

    mail_host = mail_hostname(socket.gethostname())
    sender = cfg.report.sender or f"mlsd@{mail_host}"
    recipients = tuple(cfg.report.to)
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = subject
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid("mlsd-fleet-report", domain=mail_host)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg.set_content(text, subtype="plain", charset="utf-8")
    mail = msg.as_bytes(policy=SMTP.clone(max_line_length=998))
    entry = Entry(id="cli-fleet", sender=sender, recipients=recipients, created=now.timestamp())
    outcome = asyncio.run(send_once(mail, entry, cfg.smtp))
    for rcpt in outcome.delivered:
        sys.stderr.write(f"mlsd: fleet report delivered to {rcpt}\n")
    for rcpt, why in {**outcome.transient, **outcome.permanent}.items():
        sys.stderr.write(f"mlsd: fleet report NOT delivered to {rcpt}: {why}\n")
    if outcome.error and not outcome.transient and not outcome.permanent:
        sys.stderr.write(f"mlsd: fleet report not sent: {outcome.error}\n")
    ok = outcome.delivered and not outcome.transient and not outcome.permanent
    return EXIT_OK if ok else EXIT_FAILURE
