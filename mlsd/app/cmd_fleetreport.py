"""`mlsd report --fleet`: one day's fleet report, from the fleet's PostgreSQL ([fleet] url).

It connects as the shipper does (the url, the password from `[fleet] password_file`), reads
only aggregates (mlsd.fleet.report) and prints them as text (mlsd.fleet.report_text).
`--html` and `--send` are not there yet for the fleet report.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, time, timedelta

from mlsd.app.cmd_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_config
from mlsd.app.cmd_report import FIRST_DAY


def run(args: argparse.Namespace) -> int:
    """`mlsd report --fleet [--day D] [--text]`."""
    import psycopg  # noqa: PLC0415 - only this command needs it
    from psycopg.conninfo import make_conninfo  # noqa: PLC0415

    from mlsd import logs  # noqa: PLC0415
    from mlsd.fleet import report, report_text  # noqa: PLC0415
    from mlsd.fleet.pgsink import describe  # noqa: PLC0415

    cfg = load_config(args, required=True)
    logs.configure("WARNING", "auto", sys.stderr)
    if args.how != "text":
        sys.stderr.write(f"mlsd: report --fleet --{args.how}: not there yet (only --text)\n")
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
            conn.read_only = True
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
    sys.stdout.write(report_text.render(built, tz))
    return EXIT_OK
