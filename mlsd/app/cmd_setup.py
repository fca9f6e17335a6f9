"""The commands that check or prepare a setup and touch no state: `check-config`, `lookup`
(what the GeoIP databases and DNS say about IPs) and `migrate-config`."""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mlsd import config
from mlsd.app.cmd_common import EXIT_OK, EXIT_USAGE, load_config
from mlsd.errors import ConfigError
from mlsd.untrusted import terminal

if TYPE_CHECKING:
    from mlsd.enrich.geo import DbInfo

# Modules that only some commands need (asyncio, structlog, pyinotify, maxminddb, aiodns;
# json too) are imported where used: `mlsd parse` and `--version` start in half the time.


def check_config(args: argparse.Namespace) -> int:
    """`mlsd check-config`: validate, then print the effective configuration."""
    cfg = load_config(args, required=True)
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
    # The updater's credential (issue 21): read by the daemon at each update, not at start.
    key = {"maxmind": "license_key_file", "ipinfo": "token_file"}.get(cfg.geoip.provider, "")
    key_file = getattr(cfg.geoip, key) if key and cfg.geoip.update else None
    if key_file is not None and not (cred := access.probe_read(key_file, who)).ok:
        out.append(access.sentence(cred, f"[geoip] {key}", noun="the key file"))
    out += access.state_problems(cfg.paths.state_dir, cfg.paths.csv)
    return out


def lookup(args: argparse.Namespace) -> int:
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
        cfg = load_config(args, required=False)
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


def _source(database_type: str, dbs: Sequence[DbInfo], role: str) -> str:
    """`  (GeoLite2-ASN, /var/lib/GeoIP/GeoLite2-ASN.mmdb)` for the database that answered."""
    if not database_type:
        return "  (no database answered)"
    for db in dbs:
        if db.role == role and db.served_by is not None:
            return f"  ({database_type}, {db.served_by})"
    return f"  ({database_type})"


def migrate_config(args: argparse.Namespace) -> int:
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
