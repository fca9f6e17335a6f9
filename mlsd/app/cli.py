"""The `mlsd` command: argument parsing, dispatch, and the only place that maps errors to
exit codes. The commands' bodies are in the mlsd.app.cmd_* modules, one job each.

Exit codes (mlsd.app.cmd_common): 0 success, 1 runtime failure, 2 usage or configuration
error. Errors go to stderr as one sentence; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Final, cast

from mlsd import __version__, config
from mlsd.app import cli_admin, cmd_ingest, cmd_parse, cmd_report, cmd_setup, cmd_state, cmd_store
from mlsd.app.cmd_common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE
from mlsd.app.cmd_report import FIRST_DAY
from mlsd.app.onecommand import Commands, command_of
from mlsd.errors import ConfigError, MlsdError
from mlsd.untrusted import terminal

# Modules that only some commands need (asyncio, structlog, pyinotify, maxminddb, aiodns;
# json and traceback too) are imported where used: `mlsd parse` and `--version` start in
# half the time.


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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; each subcommand sets `func`. With `only`, the parser of that
    command alone (the whole parser when there is no such command, so that argparse's
    "invalid choice" lists them all)."""
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
    sub = cast(Commands, parser.add_subparsers(dest="command", metavar="COMMAND", action=Commands))
    sub.only = only
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
    p.set_defaults(func=cmd_parse.parse)

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
    p.set_defaults(func=cmd_setup.check_config)

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
    p.set_defaults(func=cmd_ingest.scan)

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
    p.set_defaults(func=cmd_ingest.run)

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
    p.add_argument(
        "--fleet",
        action="store_true",
        help="the fleet's report, from the PostgreSQL of [fleet] url: per-server totals, "
        "attackers and usernames seen on several servers, each server's coverage "
        "(--html: the same text in a page)",
    )
    p.set_defaults(func=cmd_report.report, how="text")

    p = sub.add_parser(
        "lookup",
        parents=[common],
        help="show what the rows would carry for IPs: country, ASN, organisation, PTR",
        description="Look IPs up in the configured GeoIP/ASN databases and in DNS (a live "
        "PTR query, whatever [dns] reverse says), and say which database answered: for "
        "checking a setup. Reads /etc/mlsd/mlsd.conf when it exists and -c is not given.",
    )
    p.add_argument("ips", nargs="+", metavar="IP")
    p.set_defaults(func=cmd_setup.lookup)

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
    p.set_defaults(func=cmd_state.status)

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
                    ", the report state (report.json, coverage.json, reports/), the outbox "
                    "and the alerts journal (alerts.jsonl)"
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
        p.set_defaults(func=cmd_state.reset, purge=purge)

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
    p.set_defaults(func=cmd_setup.migrate_config)

    cli_admin.add_commands(sub, common)

    p = sub.add_parser(
        "store",
        help="the SQLite event store: rebuild it from the CSV, or check it against the CSV",
        description="The event store ([store] path) holds every committed CSV row once.",
    )
    store_sub = p.add_subparsers(dest="store_command", required=True, metavar="COMMAND")
    q = store_sub.add_parser(
        "rebuild",
        parents=[common],
        help="build the store anew from the CSV (the old file is moved aside)",
        description="Move the store aside (never deleted) and store every committed row of "
        "the CSV again. Refuses while mlsd runs.",
    )
    q.set_defaults(func=cmd_store.rebuild)
    q = store_sub.add_parser(
        "check",
        parents=[common],
        help="compare rows per day in the store and in the CSV",
        description="Count rows per day ([report] timezone) in the store and in the CSV up "
        "to the stored position; exit 0 when they agree, 1 listing the days that differ. "
        "Works while mlsd runs.",
    )
    q.set_defaults(func=cmd_store.check)
    if only is not None and not sub.found:
        return build_parser()
    return parser


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
        if ago > (date.today() - FIRST_DAY).days + 1:
            raise argparse.ArgumentTypeError(f"{raw!r} is before {FIRST_DAY}: no log has rows then")
        return ago
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a day (YYYY-MM-DD, today, yesterday or -N)"
        ) from None
    if day < FIRST_DAY:
        raise argparse.ArgumentTypeError(f"{raw!r} is before {FIRST_DAY}: no log has rows then")
    return day


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mlsd` console script."""
    args = build_parser(command_of(sys.argv[1:] if argv is None else argv)).parse_args(argv)
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
