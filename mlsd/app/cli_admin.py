"""The parsers of the commands that help an admin set mlsd up and keep it fed, and touch no
daemon state: `setup`, `geoip update`, `anonymize`, and `alerts`, which only reads it.
Part of `mlsd.app.cli`, apart to keep each module to one screenful of jobs."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlsd import config
from mlsd.app import cmd_alerts, cmd_anonymize, cmd_geoip, cmd_guided


def add_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Add `setup`, `geoip`, `anonymize` and `alerts` to the `mlsd` parser's subcommands."""
    p = sub.add_parser(
        "setup",
        parents=[common],
        help="inspect this machine and write a configuration for it",
        description="Find the mail log (or the journal), who may read it, a local MTA, the "
        "GeoIP databases and the time zone; ask on a terminal only for what cannot be "
        "found (the report's recipients); write a configuration that check-config accepts, "
        "each choice explained in a comment (0640; an existing file is kept as "
        "PATH.YYYYmmdd-HHMMSS); print the commands to run next.",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        type=Path,
        default=config.DEFAULT_PATH,
        help=f"where to write it (default {config.DEFAULT_PATH})",
    )
    p.add_argument(
        "--non-interactive",
        action="store_true",
        help="never ask: take everything from the flags, fail naming a missing one",
    )
    p.add_argument(
        "--to",
        metavar="ADDR",
        action="append",
        default=[],
        help="a report recipient (repeat it, or separate addresses with commas)",
    )
    p.add_argument("--source", choices=("file", "journal"), help="default: what is found")
    p.add_argument("--log", metavar="PATH", type=Path, help="the mail log (implies a file)")
    p.add_argument(
        "--root",
        metavar="DIR",
        type=Path,
        default=Path("/"),
        help="inspect the machine whose / is DIR (an image; the tests' fake machines)",
    )
    p.add_argument(
        "--mta",
        metavar="HOST:PORT",
        type=cmd_guided.mta_address,
        default=cmd_guided.DEFAULT_MTA,
        help="where to look for a local MTA (default 127.0.0.1:25)",
    )
    p.set_defaults(func=cmd_guided.setup)

    p = sub.add_parser(
        "geoip",
        parents=[common],
        help="GeoIP databases: `geoip update` downloads and installs them now",
        description="update: download the country and ASN databases of [geoip] provider "
        "(dbip, maxmind, ipinfo), verify each (opens, right type, not older than the "
        "installed one, test lookups answer) and rename it into [geoip] country_db and "
        "asn_db. A failed or partial download never replaces a working file. Exit 1 when "
        "any database failed.",
    )
    p.add_argument("action", choices=("update",), help="what to do (update)")
    p.set_defaults(func=cmd_geoip.update)

    p = sub.add_parser(
        "anonymize",
        parents=[common],
        help="copy mail logs with IPs, usernames, hostnames and domains replaced, for a bug report",
        description="Write FILEs (plain, .gz or - for stdin) with every IP (family kept), "
        "username, hostname and domain replaced by a keyed pseudonym: the same value gets "
        "the same pseudonym in every file anonymised with the same key; stamps, programs and "
        "the messages' structure are kept, so the copy parses to the same events. Touches "
        "no state and needs no configuration.",
    )
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("-o", "--output", metavar="OUT", type=Path, help="write here, not stdout")
    p.add_argument(
        "--key-file",
        metavar="K",
        type=Path,
        help="the pseudonyms' key (default ~/.config/mlsd/anonymize.key; created, mode 0600, "
        "when missing)",
    )
    p.set_defaults(func=cmd_anonymize.anonymize)

    p = sub.add_parser(
        "alerts",
        parents=[common],
        help="list the sentinel's alerts (possible compromises), as a table or JSON lines",
        description="Read the alerts journal (state_dir/alerts.jsonl) and list the alerts "
        "raised since --since (default: all), oldest first: time in [report] timezone, "
        "rule, user, IP, country, server, alert id and headline, attacker-chosen text "
        "escaped for the terminal. Works while the daemon runs. Exit 0, also when there "
        "are none; 1 when the journal cannot be read.",
    )
    p.add_argument(
        "--since",
        metavar="WHEN",
        type=cmd_alerts.since_arg,
        help="a day (YYYY-MM-DD, from its start), a time (ISO 8601) or a duration back "
        "from now (30m, 12h, 7d, 2w)",
    )
    p.add_argument(
        "--json", action="store_true", help="one JSON object per alert and line, for scripts"
    )
    p.set_defaults(func=cmd_alerts.alerts)
