"""`mlsd report --fleet`: one day's fleet report, from the fleet's PostgreSQL ([fleet] url).

The report is mlsd.app.fleetmail's (the daemon mails the same with `[report] fleet =
yes`): printed as text, mailed now (`--send`: a text/plain mail through [smtp] to [report]
to), or printed as a minimal HTML page (`--html`: the same text in a <pre>; no charts yet).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta

from mlsd.app.cmd_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, load_config
from mlsd.app.cmd_report import FIRST_DAY
from mlsd.config import Config


def run(args: argparse.Namespace) -> int:
    """`mlsd report --fleet [--day D] [--text|--html|--send]`."""
    from mlsd import logs  # noqa: PLC0415
    from mlsd.app import fleetmail  # noqa: PLC0415 - psycopg only for this command
    from mlsd.fleet import report_text  # noqa: PLC0415

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
    try:
        built = fleetmail.build_day(cfg, day, now)
    except fleetmail.FleetUnavailable as e:
        sys.stderr.write(f"mlsd: {e}\n")
        return EXIT_FAILURE
    if args.how == "text":
        sys.stdout.write(report_text.render(built, tz))
        return EXIT_OK
    r = fleetmail.rendered(cfg, built, now)
    if args.how == "html":
        sys.stdout.write(r.html)
        return EXIT_OK
    return send(cfg, r.message, r.sender, r.recipients, now)


def send(cfg: Config, mail: bytes, sender: str, recipients: tuple[str, ...], now: datetime) -> int:
    """Mail it now through [smtp]; exit 1 unless every recipient accepted it."""
    import asyncio  # noqa: PLC0415

    from mlsd.report.smtp import Entry, send_once  # noqa: PLC0415

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
