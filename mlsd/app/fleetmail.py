"""One day's fleet report, from the fleet's PostgreSQL, as text and as a mail: what
`mlsd report --fleet` prints or sends and what `[report] fleet = yes` mails daily.

It connects as the shipper does (the url, the password from `[fleet] password_file`),
read-only, and reads only aggregates (mlsd.fleet.report); the mail has the same headers
as the node's report (mlsd.report.message).
"""

from __future__ import annotations

import socket
from datetime import date, datetime, time, timedelta

from mlsd.config import Config
from mlsd.errors import MlsdError
from mlsd.fleet.report import FleetReport
from mlsd.report import message
from mlsd.report.mailname import mail_hostname
from mlsd.report.outbox import Rendered


class FleetUnavailable(MlsdError):
    """The fleet's database could not give the report (the reason for the operator)."""


def build_day(cfg: Config, day: date, now: datetime) -> FleetReport:
    """The fleet report of calendar `day` in `[report] timezone`; FleetUnavailable when the
    database cannot give it."""
    import psycopg  # noqa: PLC0415 - only the fleet report needs it
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415

    from mlsd.fleet import report  # noqa: PLC0415
    from mlsd.fleet.pgsink import describe  # noqa: PLC0415

    tz = cfg.report_tz()
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
            rule = cfg.sentinel
            return report.build(
                conn, day, start, end, now=now,
                failures=rule.failures, window_minutes=rule.failure_window,
            )  # fmt: skip
    except psycopg.errors.InsufficientPrivilege as e:
        raise FleetUnavailable(
            f"{target}: this role may not read the fleet's tables ({e.diag.message_primary}): "
            "the fleet report needs a role with SELECT on mlsd_events and mlsd_positions, "
            "such as the owner"
        ) from None
    except psycopg.errors.UndefinedTable:
        raise FleetUnavailable(f"{target}: no mlsd_events table: no node has shipped yet") from None
    except psycopg.Error as e:
        raise FleetUnavailable(f"{target}: {e.__class__.__name__}: {e}") from None


def subject(built: FleetReport) -> str:
    """`mlsd fleet report for D`, saying when it is partial or a node is behind."""
    text = f"mlsd fleet report for {built.day}" + (" (so far)" if built.partial else "")
    if built.behind():
        text += f": {len(built.behind())} server(s) may be behind"
    return text


def rendered(cfg: Config, built: FleetReport, now: datetime) -> Rendered:
    """The fleet report as a text/plain mail to `[report] to`, ready for the outbox."""
    from mlsd.fleet import report_text  # noqa: PLC0415

    text = report_text.render(built, cfg.report_tz())
    recipients = tuple(cfg.report.to)
    title = subject(built)
    msg, sender = message.headed(
        title,
        cfg,
        recipients,
        now=now,
        mail_host=mail_hostname(socket.gethostname()),
        kind="fleet-report",
    )
    msg.set_content(text, subtype="plain", charset="utf-8")
    return Rendered(
        day=built.day,
        partial=built.partial,
        subject=title,
        text=text,
        html=report_text.html_page(text, title),
        events=built.rows,
        message=message.wire(msg),
        sender=sender,
        recipients=recipients,
        kind="fleet",
    )
