"""The `mlsd` command: argument parsing, wiring, and the only place that picks exit codes.

Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error. Errors go to
stderr as one sentence; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from mlsd import __version__, config
from mlsd.app.logfiles import open_log
from mlsd.enrich.postfix import no_reverse, postfix_reverse
from mlsd.errors import ConfigError, InputError, MlsdError, StateError
from mlsd.ingest.csvlog import RowFormat
from mlsd.ingest.parse import Skip, is_success, parse_block, parse_line
from mlsd.rows import HEADER, AuthFailure
from mlsd.untrusted import raw_line, terminal

if TYPE_CHECKING:
    from mlsd.enrich.geo import DbInfo

# Modules that only some commands need (asyncio, structlog, pyinotify, maxminddb, aiodns;
# json and traceback too) are imported where used: `mlsd parse` and `--version` start in
# half the time.

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2

# Read in blocks: the needles are searched per block, not per line (see candidate_lines).
_CHUNK = 1 << 20


def _common(*, top: bool) -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        type=Path,
        default=None if top else argparse.SUPPRESS,
        help=f"configuration file (default {config.DEFAULT_PATH})",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show tracebacks on errors",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; each subcommand sets `func`."""
    parser = argparse.ArgumentParser(
        prog="mlsd",
        description="Mail-log sentinel: records failed SMTP/IMAP/POP3 logins from the "
        "Postfix/Dovecot log in an enriched CSV and mails a daily report.",
        parents=[_common(top=True)],
    )
    # The same options after the command; there they must not reset what was given before
    # it (`mlsd -c X status`) to the default, as argparse's subparser defaults otherwise do.
    common = _common(top=False)
    parser.add_argument("--version", action="version", version=f"mlsd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "parse",
        parents=[common],
        help="print the events in log files (plain, .gz or - for stdin); touches no state",
        description="Parse log files and print one line per authentication failure that "
        "would become a CSV row. Reads plain or gzip files (by content) or - for stdin. "
        "Without -c no configuration file is needed.",
    )
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="default: csv")
    p.add_argument(
        "--journal",
        nargs="?",
        const="",
        metavar="DIR",
        help="read the systemd journal (or the journal files in DIR) instead of files",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="instead of rows, one line per login attempt seen: recorded, or skipped and why",
    )
    p.set_defaults(func=cmd_parse)

    p = sub.add_parser(
        "check-config",
        parents=[common],
        help="validate the configuration and print it with secrets masked",
        description="Read the configuration (-c PATH, default "
        f"{config.DEFAULT_PATH}), stop at the first error with the file, section and key, "
        "else print the effective configuration (every key, defaults included) with secrets "
        "masked. Warns, without failing, about files this machine would refuse: an "
        "unreadable mail log or GeoIP database, a state or CSV directory mlsd cannot write.",
    )
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser(
        "scan",
        parents=[common],
        help="read the log up to the end of the live file into the CSV, commit, exit",
        description="Catch up from the checkpoint (rotated files included) to the end of "
        "the live log, append the rows to the CSV and commit: what `run` does, once. On a "
        "fresh state directory it imports the backlog: every rotated generation, oldest "
        "first, then the live file, from their beginnings ([follow] start_at and "
        "import_rotated apply to `run` only). It logs what it read from each file.",
    )
    p.add_argument(
        "--live-only",
        action="store_true",
        help="on a fresh state directory, read only the live file (from its beginning), "
        "not the rotated ones; no effect once a checkpoint exists",
    )
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser(
        "run",
        parents=[common],
        help="follow the log forever (stops cleanly on SIGTERM or SIGINT)",
        description="The daemon, in the foreground (the systemd unit runs this): catch up "
        "from the checkpoint, then follow the log across rotations, append a row per failed "
        "login to the CSV, and send the daily report at [report] time. SIGHUP reopens the "
        "GeoIP databases; SIGTERM or SIGINT stops it after committing what was read (a "
        "second one within 1 second is taken as the same request; a later one forces exit).",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "report",
        parents=[common],
        help="print or send the report of a day (default: yesterday)",
        description="Build the report of one calendar day in [report] timezone from the "
        "CSV (today: the day so far) and print it as text (default) or HTML, or send it "
        "to [report] to now. Sending exits 1 unless every recipient accepted it.",
    )
    p.add_argument(
        "--day",
        metavar="DAY",
        type=_day,
        help="YYYY-MM-DD, today, yesterday, or -N for N days ago, in [report] timezone "
        "(default: yesterday)",
    )
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--text", dest="how", action="store_const", const="text", help="print it as text (default)"
    )
    how.add_argument(
        "--html",
        dest="how",
        action="store_const",
        const="html",
        help="print its HTML part (to save and open in a browser)",
    )
    how.add_argument(
        "--send",
        dest="how",
        action="store_const",
        const="send",
        help="mail it to [report] to now, through [smtp]; exit 1 unless all accepted it",
    )
    p.set_defaults(func=cmd_report, how="text")

    p = sub.add_parser(
        "lookup",
        parents=[common],
        help="show what the rows would carry for IPs: country, ASN, organisation, PTR",
        description="Look IPs up in the configured GeoIP/ASN databases and in DNS (a live "
        "PTR query, whatever [dns] reverse says), and say which database answered: for "
        "checking a setup. Reads /etc/mlsd/mlsd.conf when it exists and -c is not given.",
    )
    p.add_argument("ips", nargs="+", metavar="IP")
    p.set_defaults(func=cmd_lookup)

    p = sub.add_parser(
        "status",
        parents=[common],
        help="is mlsd running and keeping up; reports, outbox, gaps, databases",
        description="Read the state files and say whether the daemon runs (the pid holding "
        "the lock), where reading stands and how far behind the end of the log, the last "
        "event, events today, the last and next report, the outbox, gaps and the GeoIP "
        "databases. Works whether or not the daemon runs, and with a configuration in "
        "error (what of it is valid is used, the error is shown as a warning). Exit 0 "
        "healthy, 1 not healthy (each problem is listed), 2 configuration error.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    p.set_defaults(func=cmd_status)

    for name, purge in (("reset", False), ("purge", True)):
        p = sub.add_parser(
            name,
            parents=[common],
            help=(
                "archive the CSV and the checkpoint: monitoring starts over"
                if not purge
                else "like reset, and also archive the report state and the outbox"
            ),
            description=(
                "Move the CSV, the checkpoint and the report's day cache"
                + (
                    ", the report state (report.json, coverage.json, reports/) and the outbox"
                    if purge
                    else ""
                )
                + " into a new archive-YYYYmmddTHHMMSS directory under the state directory "
                "(or --archive DIR). Refuses while mlsd runs. Nothing is deleted."
            ),
        )
        p.add_argument(
            "--archive", metavar="DIR", type=Path, help="put the archive directory in DIR"
        )
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        p.set_defaults(func=cmd_reset, purge=purge)

    p = sub.add_parser(
        "migrate-config",
        parents=[common],
        help="turn a MailLogSentinel config into an mlsd config",
        description="Read a MailLogSentinel configuration and write the equivalent mlsd "
        "configuration to standard output (or -o FILE); each old setting without an "
        "equivalent is listed on stderr with the reason.",
    )
    p.add_argument("source", metavar="FILE", type=Path)
    p.add_argument("-o", "--output", metavar="FILE", type=Path, help="write here, not stdout")
    p.set_defaults(func=cmd_migrate_config)
    return parser


def _load_config(args: argparse.Namespace, *, required: bool) -> config.Config:
    path: Path | None = args.config
    if path is None:
        if not required:
            return config.Config()
        path = config.DEFAULT_PATH
    return config.load(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    """`mlsd check-config`: validate, then print the effective configuration."""
    cfg = _load_config(args, required=True)
    sys.stdout.write(config.render(cfg))
    # Valid is not usable: say what this machine's files would refuse (exit status unchanged,
    # as the config may be checked away from the server it is for).
    for warning in _file_warnings(cfg):
        sys.stderr.write(f"mlsd: warning: {warning}\n")
    sys.stderr.write(f"mlsd: {cfg.source_file}: configuration is valid\n")
    return EXIT_OK


def _file_warnings(cfg: config.Config) -> list[str]:
    """The configured files that mlsd could not use here, one sentence each.

    The log and the GeoIP databases are judged for the user mlsd runs as: the caller, or,
    when the caller is root (who reads everything), the shipped unit's user (an unprivileged
    user in group adm). The state and CSV directories are judged for the caller: the unit
    makes them for its user (StateDirectory=, LogsDirectory=).
    """
    from mlsd import access  # noqa: PLC0415 - see the note on imports at the top

    who = access.Who.shipped_unit() if os.geteuid() == 0 else None
    found = access.probe_read(cfg.paths.mail_log, who)
    out = (
        []
        if found.ok or cfg.source.kind != "file"
        else [access.sentence(found, "[paths] mail_log")]
    )
    for key, path in (("country_db", cfg.geoip.country_db), ("asn_db", cfg.geoip.asn_db)):
        db = access.probe_read(path, who)
        if db.verdict not in (access.Verdict.OK, access.Verdict.MISSING):
            out.append(access.sentence(db, f"[geoip] {key}", noun="the GeoIP database"))
    out += access.state_problems(cfg.paths.state_dir, cfg.paths.csv)
    return out


def cmd_scan(args: argparse.Namespace) -> int:
    """`mlsd scan`: catch up to the end of the live log, commit, exit 0."""
    import asyncio  # noqa: PLC0415

    from mlsd import access, logs  # noqa: PLC0415 - see the note on imports at the top
    from mlsd.enrich.enricher import Enricher  # noqa: PLC0415
    from mlsd.enrich.geo import Geo  # noqa: PLC0415
    from mlsd.ingest import session  # noqa: PLC0415 - see the note on imports at the top

    cfg = _load_config(args, required=True)
    logs.configure(cfg.log.level, cfg.log.format)
    # Refused before anything is touched: exit 0 having read nothing would say "all read".
    # A log that does not exist yet is not an error (the follower says it waits for it).
    found = access.probe_read(cfg.paths.mail_log)
    if cfg.source.kind == "file" and found.verdict not in (
        access.Verdict.OK,
        access.Verdict.MISSING,
    ):
        raise InputError(access.sentence(found, "[paths] mail_log") + "; nothing was read")
    problems = access.state_problems(cfg.paths.state_dir, cfg.paths.csv)
    if problems:
        raise StateError(problems[0])

    async def scan() -> None:
        enricher = Enricher(cfg, Geo(cfg.geoip))
        try:
            first = session.LIVE_ONLY if args.live_only else session.BACKLOG
            opened = session.open_session(cfg, enricher, first_start=first)
            try:
                await session.scan(opened)
            finally:
                session.close_session(opened)
        finally:
            await enricher.close()

    asyncio.run(scan())
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`mlsd run`: follow the log until SIGTERM/SIGINT, everything committed at exit."""
    import asyncio  # noqa: PLC0415 - see the note on imports at the top

    from mlsd import logs  # noqa: PLC0415
    from mlsd.app.service import Service  # noqa: PLC0415

    cfg = _load_config(args, required=True)
    logs.configure(cfg.log.level, cfg.log.format)
    return asyncio.run(Service(cfg).run())


# No row can be older (the report also reads the 30 days before, and the day's edges in
# any zone): `--day 0001-01-01` overflowed `date` deep inside the report.
_FIRST_DAY: Final = date(1970, 1, 1)


_DAYS_AGO: Final = {"today": 0, "yesterday": 1}


def _day(raw: str) -> date | int:
    """A day, or how many days before today (`today`, `yesterday`, `-N`).

    Relative days are resolved by the command, in [report] timezone: the parser has no
    configuration yet.
    """
    word = raw.strip().lower()
    if word in _DAYS_AGO:
        return _DAYS_AGO[word]
    if word.startswith("-") and word[1:].isdecimal() and word[1:].isascii():
        ago = int(word[1:])
        if ago > (date.today() - _FIRST_DAY).days + 1:
            raise argparse.ArgumentTypeError(
                f"{raw!r} is before {_FIRST_DAY}: no log has rows then"
            )
        return ago
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a day (YYYY-MM-DD, today, yesterday or -N)"
        ) from None
    if day < _FIRST_DAY:
        raise argparse.ArgumentTypeError(f"{raw!r} is before {_FIRST_DAY}: no log has rows then")
    return day


def cmd_report(args: argparse.Namespace) -> int:
    """`mlsd report`: one day's report, printed or sent now (not through the outbox)."""
    import asyncio  # noqa: PLC0415 - see the note on imports at the top
    import socket  # noqa: PLC0415

    from mlsd import logs  # noqa: PLC0415
    from mlsd.enrich.geo import Geo  # noqa: PLC0415
    from mlsd.report import compose  # noqa: PLC0415
    from mlsd.report.smtp import Entry, send_once  # noqa: PLC0415
    from mlsd.watched import Ledger  # noqa: PLC0415

    cfg = _load_config(args, required=True)
    logs.configure("WARNING", "auto", sys.stderr)
    tz = cfg.report_tz()
    now = datetime.now(UTC)
    today = now.astimezone(tz).date()
    asked: date | int | None = args.day
    if asked is None:
        asked = 1
    day = today - timedelta(days=asked) if isinstance(asked, int) else asked
    if day < _FIRST_DAY:
        sys.stderr.write(f"mlsd: {day} is before {_FIRST_DAY}: no log has rows then\n")
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
    message, sender, recipients = compose.to_message(built, cfg, now=now, hostname=host)
    entry = Entry(id="cli", sender=sender, recipients=tuple(recipients), created=now.timestamp())
    outcome = asyncio.run(send_once(message, entry, cfg.smtp))
    for rcpt in outcome.delivered:
        sys.stderr.write(f"mlsd: report of {day} delivered to {rcpt}\n")
    for rcpt, why in {**outcome.transient, **outcome.permanent}.items():
        sys.stderr.write(f"mlsd: report of {day} NOT delivered to {rcpt}: {why}\n")
    if outcome.error and not outcome.transient and not outcome.permanent:
        sys.stderr.write(f"mlsd: report of {day} not sent: {outcome.error}\n")
    ok = outcome.delivered and not outcome.transient and not outcome.permanent
    return EXIT_OK if ok else EXIT_FAILURE


def cmd_lookup(args: argparse.Namespace) -> int:
    """`mlsd lookup IP…`: country, ASN, organisation, PTR, and where each came from."""
    import asyncio  # noqa: PLC0415 - see the note on imports at the top

    from mlsd import logs  # noqa: PLC0415
    from mlsd.enrich.geo import Geo  # noqa: PLC0415
    from mlsd.enrich.rdns import ReverseResolver  # noqa: PLC0415

    ips: list[str] = []
    for raw in args.ips:
        try:
            ips.append(str(ipaddress.ip_address(raw.strip())))
        except ValueError:
            sys.stderr.write(f"mlsd: {raw!r} is not an IPv4 or IPv6 address\n")
            return EXIT_USAGE
    if args.config is None and config.DEFAULT_PATH.exists():
        cfg = config.load(config.DEFAULT_PATH)
    else:
        cfg = _load_config(args, required=False)
    # Problems (a missing or unusable database) on stderr, the answers on stdout.
    logs.configure("WARNING", "auto", sys.stderr)
    geo = Geo(cfg.geoip)
    resolver = ReverseResolver(cfg.dns)

    async def resolve() -> dict[str, tuple[str, str]]:
        try:
            return dict(await resolver.resolve_many(ips))
        finally:
            await resolver.close()

    try:
        dbs = geo.describe()
        for db in dbs:
            sys.stdout.write(terminal(db.line()) + "\n")
        ptrs = asyncio.run(resolve())
        for ip in ips:
            found = geo.lookup(ip)
            name, status = ptrs[ip]
            block = (
                f"\n{ip}\n"
                f"  country       {found.country_code}"
                f"{_source(found.country_source, dbs, 'country')}\n"
                f"  asn           {found.asn}{_source(found.asn_source, dbs, 'asn')}\n"
                f"  organisation  {found.aso}\n"
                f"  ptr           {name or '-'} ({status}; dns reverse = {cfg.dns.reverse})\n"
            )
            # The organisation and the database type come from a database file, the PTR
            # name from whoever owns the IP's reverse zone: attacker-text policy, per line.
            sys.stdout.write("\n".join(map(terminal, block.split("\n"))))
    finally:
        geo.close()
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """`mlsd status`: health from the state files; exit 0 healthy, 1 not."""
    from mlsd import logs  # noqa: PLC0415 - see the note on imports at the top
    from mlsd.app import status  # noqa: PLC0415 - see the note on imports at the top

    # A config with a typo must not hide whether the daemon, still on its previous config,
    # is healthy: what of it is valid is used (defaults for the rest), the error is shown
    # as a warning, and the exit status is still 2 (the next start or reload will fail).
    cfg, errors = config.salvage(args.config or config.DEFAULT_PATH)
    # Status says itself what it finds wrong (a missing database…): no log lines as well.
    logs.configure("ERROR", "auto", sys.stderr)
    found = status.gather(cfg, datetime.now(UTC))
    found.warnings[:0] = [
        f"configuration error: {error} (the next start or reload will fail; shown with "
        "the default in its place)"
        for error in errors
    ]
    for error in errors:
        sys.stderr.write(f"mlsd: {error}\n")
    sys.stdout.write(found.to_json() if args.json else status.render(found))
    if errors:
        return EXIT_USAGE
    return EXIT_OK if found.healthy else EXIT_FAILURE


def cmd_reset(args: argparse.Namespace) -> int:
    """`mlsd reset` / `mlsd purge`: archive, never delete; refused while mlsd runs."""
    import time  # noqa: PLC0415

    from mlsd.app import archive  # noqa: PLC0415 - see the note on imports at the top

    cfg = _load_config(args, required=True)
    what = "purge" if args.purge else "reset"
    # The lock first: while mlsd runs, asking for --yes (or a confirmation) is asking for
    # something that will be refused anyway.
    try:
        held = archive.lock(cfg)
    except MlsdError as exc:
        why = str(exc)
        if why.endswith("; stop it first"):  # another mlsd holds it: say how, once
            why += " (systemctl stop mlsd), then run this again"
        sys.stderr.write(f"mlsd: {what} refused: {why}\n")
        return EXIT_FAILURE
    try:
        if not args.yes and not sys.stdin.isatty():
            sys.stderr.write(
                f"mlsd: {what} moves files away: confirm with --yes (no terminal to ask on)\n"
            )
            return EXIT_USAGE
        moves = archive.plan(cfg, purge=args.purge)
        if not moves:
            sys.stderr.write(f"mlsd: nothing to {what}: no CSV, checkpoint or report state\n")
            return EXIT_OK
        parent = args.archive or cfg.paths.state_dir
        try:
            archive.check_archive_parent(parent, cfg, purge=args.purge)
        except MlsdError as exc:
            sys.stderr.write(f"mlsd: {what} refused: {exc}; nothing moved\n")
            return EXIT_FAILURE
        sys.stderr.write(f"mlsd: {what} will move into a new archive directory in {parent}:\n")
        for m in moves:
            sys.stderr.write(f"  {m.source}  ({m.what})\n")
        if not args.yes:
            sys.stderr.write("Proceed? [y/N] ")
            sys.stderr.flush()
            if sys.stdin.readline().strip().lower() not in ("y", "yes"):
                sys.stderr.write(f"mlsd: {what} cancelled; nothing moved\n")
                return EXIT_FAILURE
        dest = archive.new_archive(parent, time.time())
        for m in moves:
            sys.stdout.write(f"moved {m.source} -> {archive.move(m.source, dest)}\n")
    finally:
        held.release()
    start = "from its beginning" if cfg.follow.start_at == "beginning" else "from its end"
    sys.stdout.write(
        f"archived in {dest}; the next start reads the live log {start} ([follow] start_at)\n"
    )
    return EXIT_OK


def cmd_migrate_config(args: argparse.Namespace) -> int:
    """`mlsd migrate-config FILE`: an equivalent mlsd config, and what has none."""
    from mlsd.app.migrate import migrate  # noqa: PLC0415 - see the note on imports at the top

    try:
        text = args.source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{args.source}: cannot read: {exc}", path=args.source) from None
    result = migrate(text, str(args.source))
    if args.output is None:
        sys.stdout.write(result.text)
    else:
        args.output.write_text(result.text, encoding="utf-8")
        sys.stderr.write(
            f"mlsd: wrote {args.output}; check it with: mlsd check-config -c {args.output}\n"
        )
    for note in result.notes:
        value = f" = {note.value}" if note.value else ""
        sys.stderr.write(f"mlsd: not carried over: {note.setting}{value}: {note.why}\n")
    return EXIT_OK


def _source(database_type: str, dbs: Sequence[DbInfo], role: str) -> str:
    """`  (GeoLite2-ASN, /var/lib/GeoIP/GeoLite2-ASN.mmdb)` for the database that answered."""
    if not database_type:
        return "  (no database answered)"
    for db in dbs:
        if db.role == role and db.served_by is not None:
            return f"  ({database_type}, {db.served_by})"
    return f"  ({database_type})"


def cmd_parse(args: argparse.Namespace) -> int:
    """`mlsd parse FILE…`: print would-be rows, touch nothing."""
    cfg = _load_config(args, required=False)
    log_tz = cfg.log_tz()
    if (args.journal is None) == (not args.files) or (args.journal is not None and args.explain):
        sys.stderr.write("mlsd: parse: give FILEs, or --journal [DIR] (without --explain)\n")
        return EXIT_USAGE
    if args.explain:
        return _explain(args.files, log_tz)
    out = sys.stdout.buffer
    reverse = postfix_reverse if cfg.dns.reverse == "postfix" else no_reverse
    emit: Callable[[list[AuthFailure]], bytes]
    if args.format == "csv":
        out.write(HEADER)

        rows = RowFormat(tz=log_tz, date_format=cfg.csv.date_format, cap=cfg.csv.max_field_length)

        def emit(events: list[AuthFailure]) -> bytes:
            return rows.encode(events, reverse)
    else:
        import json  # noqa: PLC0415 - see the note on imports at the top

        def emit(events: list[AuthFailure]) -> bytes:
            return "".join(
                json.dumps(_event_json(ev, reverse(ev).hostname)) + "\n" for ev in events
            ).encode()

    if args.journal is not None:
        from mlsd.app.journalparse import parse_journal  # noqa: PLC0415 - see the top

        label, stats = parse_journal(cfg, args.journal, out, emit)
        out.flush()
        sys.stderr.write(f"mlsd: {terminal(label)}: {_summary(stats)}\n")
        return EXIT_OK
    failed = False
    for name in args.files:
        try:
            stats = _parse_one(name, out, emit, log_tz)
        except InputError as exc:
            sys.stderr.write(f"mlsd: {exc}\n")
            failed = True
            continue
        sys.stderr.write(f"mlsd: {terminal(name)}: {_summary(stats)}\n")
    out.flush()
    return EXIT_FAILURE if failed else EXIT_OK


def _summary(stats: Counter[object]) -> str:
    """`1000 lines read, 12 events; not recorded: 3 (2 success, 1 server-error)`.

    As fail2ban-regex says it: what was read, what matched, and why the rest of the login
    attempts were not recorded, largest reason first.
    """
    skips = sorted(
        ((r, n) for r, n in stats.items() if isinstance(r, Skip) and n),
        key=lambda item: (-item[1], _by_value(item)),
    )
    lines = stats["lines"]
    text = f"{lines} line{'s' if lines != 1 else ''} read, {stats['events']} events"
    if skips:
        why = ", ".join(f"{n} {r.value}" for r, n in skips)
        text += f"; not recorded: {sum(n for _, n in skips)} ({why})"
    return text


def _explain(files: Sequence[str], log_tz: tzinfo) -> int:
    """`parse --explain`: each line that is a login attempt, recorded or skipped and why.

    Line by line, not by block: slower, but this is for reading a log by hand.
    """
    out = sys.stdout
    failed = False
    for name in files:
        try:
            stream, ref = open_log(name)
            with stream:
                for n, line in enumerate(stream, 1):
                    result = parse_line(line, ref, log_tz)
                    if result is None:
                        if not is_success(line):
                            continue
                        verdict = f"skipped ({Skip.SUCCESS.value})"
                    elif isinstance(result, AuthFailure):
                        # Every field came from the line, the IP and service too.
                        verdict = (
                            f"recorded ip={terminal(result.ip)} user={_shown(result.user)} "
                            f"service={terminal(result.service)} attempts={result.attempts}"
                        )
                    else:
                        verdict = f"skipped ({result.value})"
                    prefix = f"{terminal(name)}:" if len(files) > 1 else ""
                    out.write(f"{prefix}{n}: {verdict}: {raw_line(line)}\n")
        except InputError as exc:
            sys.stderr.write(f"mlsd: {exc}\n")
            failed = True
        except (OSError, EOFError, zlib.error) as exc:
            sys.stderr.write(f"mlsd: {name}: read failed: {exc}\n")
            failed = True
    out.flush()
    return EXIT_FAILURE if failed else EXIT_OK


def _shown(user: str | None) -> str:
    import json  # noqa: PLC0415 - see the note on imports at the top

    return "-" if user is None else json.dumps(raw_line(user.encode(), 200), ensure_ascii=False)


def _by_value(item: tuple[object, int]) -> str:
    key = item[0]
    return key.value if isinstance(key, Skip) else str(key)


def _parse_one(
    name: str,
    out: BinaryIO,
    emit: Callable[[list[AuthFailure]], bytes],
    log_tz: tzinfo,
) -> Counter[object]:
    # Lines are counted per block with bytes.count (C, no Python call per line): the
    # summary says "lines read" as fail2ban-regex does, for a few percent of the time.
    stream, ref = open_log(name)
    skipped: Counter[Skip] = Counter()
    size = 0
    lines = 0
    events = 0
    carry = b""
    try:
        with stream:
            while chunk := stream.read(_CHUNK):
                size += len(chunk)
                lines += chunk.count(b"\n")
                first = chunk.find(b"\n") + 1
                if not first:  # a line longer than a block: keep gathering it
                    carry += chunk
                    continue
                # The line that began in the last block is completed apart: joining it to
                # the whole block would copy a MiB per block (a sixth of a bare read loop).
                batch = parse_block(carry + chunk[:first], ref, log_tz, skipped) if carry else []
                batch += parse_block(chunk, ref, log_tz, skipped, start=first if carry else 0)
                carry = chunk[chunk.rfind(b"\n") + 1 :]
                if batch:
                    out.write(emit(batch))
                    events += len(batch)
            if carry:  # a last line without its newline: the file is complete, so it counts
                lines += 1
                batch = parse_block(carry, ref, log_tz, skipped, final=True)
                out.write(emit(batch))
                events += len(batch)
    except (OSError, EOFError, zlib.error) as exc:
        # A truncated or corrupt .gz: what was read is already printed; say where it stopped.
        raise InputError(
            f"{terminal(name)}: read failed after {lines} lines ({size} bytes): {exc}"
        ) from None
    stats: Counter[object] = Counter(skipped)
    stats["events"] = events
    stats["lines"] = lines
    stats["bytes"] = size
    return stats


def _event_json(ev: AuthFailure, hostname: str) -> dict[str, object]:
    return {
        "time": ev.time.isoformat(),
        "server": ev.server,
        "service": ev.service,
        "mechanism": ev.mechanism,
        "ip": ev.ip,
        "user": ev.user,
        "hostname": hostname,
        "attempts": ev.attempts,
        "reason": ev.reason,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mlsd` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        _error(exc, args)
        return EXIT_USAGE
    except MlsdError as exc:
        _error(exc, args)
        return EXIT_FAILURE
    except BrokenPipeError:
        # `mlsd parse … | head`: the reader left; not an error worth a traceback.
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        if exc.filename is None:
            return _internal(exc, args)
        # The environment, not a bug (a full disk, a vanished directory, a permission): one
        # sentence that names the file, the same with or without --debug's traceback.
        if args.debug:
            _traceback()
        who = ""
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            from mlsd.access import Who  # noqa: PLC0415

            who = f" (mlsd runs as {Who.me()}; see ls -ld on it and on its directory)"
        sys.stderr.write(f"mlsd: {terminal(str(exc.filename))}: {exc.strerror}{who}\n")
        return EXIT_FAILURE
    except Exception as exc:
        return _internal(exc, args)
    return code


def _internal(exc: Exception, args: argparse.Namespace) -> int:
    if getattr(args, "debug", False):
        _traceback()
    sys.stderr.write(
        f"mlsd: internal error: {exc.__class__.__name__}: {terminal(str(exc))} "
        "(run again with --debug for the traceback, and please report it)\n"
    )
    return EXIT_FAILURE


def _error(exc: BaseException, args: argparse.Namespace) -> None:
    if getattr(args, "debug", False):
        _traceback()
    sys.stderr.write(f"mlsd: {exc}\n")


def _traceback() -> None:
    import traceback  # noqa: PLC0415 - see the note on imports at the top

    traceback.print_exc()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
