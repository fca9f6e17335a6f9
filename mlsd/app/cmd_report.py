"""`mlsd report`: one day's report from the CSV, printed or sent now (not through the outbox)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Final

from mlsd.app.cmd_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_config

# Modules that only some commands need (asyncio, structlog, pyinotify, maxminddb, aiodns;
# json too) are imported where used: `mlsd parse` and `--version` start in half the time.

# No row can be older (the report also reads the 30 days before, and the day's edges in
# any zone): `--day 0001-01-01` overflowed `date` deep inside the report.
FIRST_DAY: Final = date(1970, 1, 1)


def report(args: argparse.Namespace) -> int:
    """`mlsd report`: one day's report, printed or sent now (not through the outbox)."""
    import asyncio  # noqa: PLC0415 - see the note on imports at the top
    import socket  # noqa: PLC0415

    from mlsd import logs  # noqa: PLC0415
    from mlsd.app import storeread  # noqa: PLC0415
    from mlsd.enrich.geo import Geo  # noqa: PLC0415
    from mlsd.report import compose, message  # noqa: PLC0415
    from mlsd.report.smtp import Entry, send_once  # noqa: PLC0415
    from mlsd.watched import Ledger  # noqa: PLC0415

    if getattr(args, "fleet", False):
        from mlsd.app import cmd_fleetreport  # noqa: PLC0415

        return cmd_fleetreport.run(args)
    cfg = load_config(args, required=True)
    logs.configure("WARNING", "auto", sys.stderr)
    tz = cfg.report_tz()
    now = datetime.now(UTC)
    today = now.astimezone(tz).date()
    asked: date | int | None = args.day
    if asked is None:
        asked = 1
    day = today - timedelta(days=asked) if isinstance(asked, int) else asked
    if day < FIRST_DAY:
        sys.stderr.write(f"mlsd: {day} is before {FIRST_DAY}: no log has rows then\n")
        return EXIT_USAGE
    if day > today:
        sys.stderr.write(f"mlsd: {day} has not begun yet in {tz}\n")
        return EXIT_USAGE
    # The daemon's own counters for the day, when it has written them.
    ledger = Ledger(cfg.paths.state_dir)
    coverage = compose.Coverage.of(ledger.get(day), ledger.first_start(day))
    geo = Geo(cfg.geoip)
    try:
        dates = [db.summary() for db in geo.describe()]
    finally:
        geo.close()
    host = socket.gethostname()
    built = compose.build(
        cfg,
        day,
        until=now if day == today else None,
        coverage=coverage,
        geoip_dates=dates,
        hostname=host,
        now=now,
        source=storeread.report_source(cfg),
    )
    if args.how == "text":
        sys.stdout.write(built.text + "\n")
        return EXIT_OK
    if args.how == "html":
        sys.stdout.write(built.html)
        return EXIT_OK
    if not cfg.report.to:
        sys.stderr.write(f"mlsd: {cfg.source_file}: [report] to: no recipients to send to\n")
        return EXIT_USAGE
    mail, sender, recipients = message.to_message(built, cfg, now=now, hostname=host)
    entry = Entry(id="cli", sender=sender, recipients=tuple(recipients), created=now.timestamp())
    outcome = asyncio.run(send_once(mail, entry, cfg.smtp))
    for rcpt in outcome.delivered:
        sys.stderr.write(f"mlsd: report of {day} delivered to {rcpt}\n")
    for rcpt, why in {**outcome.transient, **outcome.permanent}.items():
        sys.stderr.write(f"mlsd: report of {day} NOT delivered to {rcpt}: {why}\n")
    if outcome.error and not outcome.transient and not outcome.permanent:
        sys.stderr.write(f"mlsd: report of {day} not sent: {outcome.error}\n")
    ok = outcome.delivered and not outcome.transient and not outcome.permanent
    return EXIT_OK if ok else EXIT_FAILURE
