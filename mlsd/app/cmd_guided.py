"""`mlsd setup`: inspect the machine, ask only what cannot be found out, write a config.

The probe (mlsd.app.setupprobe) finds the facts; this module turns them into choices with
their reasons (mlsd.app.setuptext writes them), asks for the recipients on a terminal, and
writes the file: 0640 in the service's group, never over an existing file without a dated
copy of it, never through a symbolic link.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path, PurePosixPath

from mlsd import config
from mlsd.app import setupprobe, setuptext
from mlsd.app.cli_admin import DEFAULT_MTA
from mlsd.app.cmd_common import EXIT_OK, EXIT_USAGE
from mlsd.app.setuptext import Spot
from mlsd.config.keys import SCHEMA
from mlsd.durable import fsync_dir, write_all
from mlsd.errors import MlsdError
from mlsd.safefs import create_temp, open_nofollow, read_file
from mlsd.untrusted import terminal


class Missing(Exception):
    """Something only the admin can say, and no terminal to ask on: names the flag."""


def setup(args: argparse.Namespace) -> int:
    """`mlsd setup`: probe, decide, write, say what to run next."""
    out: Path = args.output
    root: Path = args.root
    ask = not args.non_interactive and sys.stdin.isatty()
    found = setupprobe.probe(root, mta=args.mta)
    try:
        plan, warnings = decide(found, args, ask=ask)
    except Missing as exc:
        sys.stderr.write(f"mlsd: setup: {exc}\n")
        return EXIT_USAGE
    now = datetime.now().astimezone()
    header = [
        f"mlsd configuration, written by `mlsd setup` on {now:%Y-%m-%d %H:%M %Z}.",
        "Only what differs from the defaults, or what you should see, is set here, each",
        "with the reason it was chosen. `mlsd check-config` prints every key with its",
        "effective value; man mlsd (or mlsd.conf.example) documents them all.",
    ]
    text = setuptext.render(plan, header)
    setuptext.check(text, out, plan)
    gid = _service_gid(root, found.unit_groups)
    kept = write_config(out, text.encode(), gid=gid, stamp=now)
    say = sys.stdout.write
    if kept is not None:
        say(f"kept the previous {terminal(str(out))} as {terminal(str(kept))}\n")
    say(f"wrote {terminal(str(out))}\n")
    for warning in warnings:
        sys.stderr.write(f"mlsd: warning: {terminal(warning)}\n")
    c = "" if out == config.DEFAULT_PATH else f" -c {out}"
    say("next:\n")
    say(f"  mlsd check-config{terminal(c)}\n")
    if c:
        say(f"  (the unit reads {config.DEFAULT_PATH}: copy it there, or change its ExecStart)\n")
    say("  systemctl daemon-reload && systemctl enable --now mlsd\n")
    say(f"  mlsd status{terminal(c)}\n")
    return EXIT_OK


def decide(
    found: setupprobe.Findings, args: argparse.Namespace, *, ask: bool
) -> tuple[setuptext.Plan, list[str]]:
    """The configuration and the reason for each choice; warnings for the terminal."""
    why: dict[Spot, list[str]] = {}
    warnings: list[str] = []
    show: set[Spot] = {("source", "type"), ("report", "to"), ("report", "timezone")}
    cfg = config.Config()
    cfg, more = _source(cfg, found, args, why, show, ask=ask)
    warnings += more
    to = _recipients(args, found, why, ask=ask)
    zone_why = (
        [f"The system's zone, from {found.timezone_from}: the report's days are cut in it."]
        if found.timezone
        else [
            "No zone in /etc/timezone or /etc/localtime: empty is the system's zone (UTC",
            "when it has none). Set an IANA name such as Europe/Paris to cut days there.",
        ]
    )
    why[("report", "timezone")] = [
        *zone_why,
        "Log stamps without an offset are read in the system's zone ([source] timezone).",
    ]
    cfg = replace(cfg, report=replace(cfg.report, to=to, timezone=found.timezone))
    cfg, more = _smtp(cfg, found, why)
    warnings += more
    cfg = _geoip(cfg, found, why)
    return setuptext.Plan(cfg=cfg, why=why, show=frozenset(show)), warnings


def _source(
    cfg: config.Config,
    found: setupprobe.Findings,
    args: argparse.Namespace,
    why: dict[Spot, list[str]],
    show: set[Spot],
    *,
    ask: bool,
) -> tuple[config.Config, list[str]]:
    groups = " ".join(found.unit_groups) or "none"
    unit = found.unit_from or "the shipped unit (contrib/systemd/mlsd.service)"
    if args.log is not None and args.source == "journal":
        raise Missing("--log names a file: it cannot go with --source journal")
    if args.source == "journal" or (
        args.source is None and args.log is None and not found.logs and not found.rsyslog_mail
    ):
        why[("source", "type")] = (
            ["journal: asked for with --source journal."]
            if args.source == "journal"
            else [
                "journal: no mail log file here (/var/log/mail.log, /var/log/maillog,",
                "Postfix's maillog_file) and no rsyslog rule writing one, so Postfix and",
                "Dovecot log only to the systemd journal.",
            ]
        ) + [
            f"The service's user reads it as a member of group adm or systemd-journal: {unit}",
            f"gives it: {groups}.",
        ]
        problems = []
        if not _journal_ok(found.unit_groups):
            problems.append(
                f"the service's groups ({groups}) cannot read the journal: add "
                "SupplementaryGroups=systemd-journal with `systemctl edit mlsd`"
            )
        if found.journal_dir is None:
            problems.append("no journal directory (/var/log/journal, /run/log/journal) here")
        why[("source", "type")] += [f"Warning: {m}." for m in problems]
        return replace(cfg, source=replace(cfg.source, kind="journal")), problems
    path, reason = _log_path(found, args, ask=ask)
    show.add(("paths", "mail_log"))
    why[("source", "type")] = ["file: [paths] mail_log and its rotations."]
    lines = [reason]
    more: list[str] = []
    log = next((f for f in found.logs if f.path == path), None)
    if log is None:
        log = setupprobe.describe_log(found.root, path, found.unit_groups)
    if log is not None:
        lines.append(f"It is {log.mode_text()}: {_readers(log)}.")
        if log.service_reads:
            lines.append(f"The service's user may read it (groups from {unit}: {groups}).")
        else:
            more.append(
                f"the service's user (groups {groups}, from {unit}) cannot read {path} "
                f"({log.mode_text()}): chgrp adm {path} && chmod g+r {path} (and create "
                f"0640 root adm in its logrotate rule), or add group {log.group} with "
                "`systemctl edit mlsd` (SupplementaryGroups=)"
            )
            lines.append(f"Warning: {more[-1]}.")
    why[("paths", "mail_log")] = lines
    cfg = replace(cfg, paths=replace(cfg.paths, mail_log=Path(str(path))))
    return cfg, more


def _readers(log: setupprobe.LogFile) -> str:
    """Who the mode bits let read it."""
    if log.mode & 0o004:
        return "everyone may read it"
    if log.mode & 0o040:
        return f"the members of group {log.group} may read it"
    return f"only {log.owner} may read it"


def _journal_ok(groups: tuple[str, ...]) -> bool:
    """Whether one of the service's groups may read the system journal."""
    return bool(setupprobe.JOURNAL_GROUPS.intersection(groups))


def _log_path(
    found: setupprobe.Findings, args: argparse.Namespace, *, ask: bool
) -> tuple[PurePosixPath, str]:
    if args.log is not None:
        if not args.log.is_absolute():
            raise Missing(f"--log {args.log}: give the absolute path of the mail log")
        return PurePosixPath(args.log), "Given with --log."
    if found.logs:
        first = found.logs[0]
        if first.path == found.maillog_file:
            return first.path, (
                f"Postfix's maillog_file ({found.maillog_from}): postlogd writes Postfix's "
                "log there. Dovecot's lines must be in it too, or its IMAP/POP3 failures "
                "are not seen."
            )
        return first.path, "The mail log found on this machine."
    if found.rsyslog_mail:
        return setupprobe.MAIL_LOGS[0], (
            "Not there yet: rsyslog's rule writes mail to it, and it appears with the "
            "first mail line."
        )
    if not ask:
        raise Missing(
            "--source file: no mail log found here (/var/log/mail.log, /var/log/maillog, "
            "Postfix's maillog_file): name it with --log PATH"
        )
    while True:
        answer = _prompt("Which file is the mail log (absolute path)? ")
        if answer.startswith("/") and answer.isprintable():
            return PurePosixPath(answer), "Given at the prompt."
        sys.stderr.write("  an absolute path, such as /var/log/mail.log\n")


def _recipients(
    args: argparse.Namespace,
    found: setupprobe.Findings,
    why: dict[Spot, list[str]],
    *,
    ask: bool,
) -> tuple[str, ...]:
    parse = SCHEMA["report"][1]["to"][1]
    if args.to:
        try:
            to: tuple[str, ...] = parse(",".join(args.to))
        except ValueError as exc:
            raise Missing(f"--to {' '.join(args.to)!r}: expected {exc}") from None
        why[("report", "to")] = ["Who gets the daily report: given with --to."]
        return to
    if not ask:
        raise Missing(
            "who gets the daily report cannot be found out: pass --to ADDR (once per "
            "recipient, or separated by commas)"
        )
    offer = ", ".join(found.root_alias)
    hint = f" [{offer}]" if offer else ""
    while True:
        answer = _prompt(
            f"Who gets the daily report? E-mail addresses, separated by commas{hint}: "
        )
        try:
            to = parse(answer or offer)
        except ValueError as exc:
            sys.stderr.write(f"  expected {exc}\n")
            continue
        if to:
            why[("report", "to")] = ["Who gets the daily report: answered at the prompt."]
            return to
        sys.stderr.write("  at least one address\n")


def _prompt(question: str) -> str:
    sys.stderr.write(question)  # as `reset` asks: stdout keeps only what was done
    sys.stderr.flush()
    line = sys.stdin.readline()
    if not line:
        raise Missing("no answer (end of input); pass the answers as flags instead")
    return line.strip()


def _smtp(
    cfg: config.Config, found: setupprobe.Findings, why: dict[Spot, list[str]]
) -> tuple[config.Config, list[str]]:
    if found.mta is not None:
        host, _, port = found.mta.rpartition(":")
        why[("smtp", "")] = [f"A local MTA accepted a connection on {found.mta}: reports go to it."]
        if (host, int(port)) != DEFAULT_MTA:
            cfg = replace(cfg, smtp=replace(cfg.smtp, host=host, port=int(port)))
        return cfg, []
    warning = (
        f"nothing accepted a connection on {found.mta_tried}: no local MTA to hand the "
        "report to; set [smtp] host, port, security, username and password_file for a relay"
    )
    why[("smtp", "")] = [
        f"Warning: {warning}.",
        "Until then each report waits in the outbox, retried for [smtp] retry_hours.",
        "For example:",
        "host = relay.example.org",
        "port = 587",
        "security = starttls",
    ]
    return cfg, [warning]


def _geoip(
    cfg: config.Config, found: setupprobe.Findings, why: dict[Spot, list[str]]
) -> config.Config:
    lines: list[str] = []
    geo = cfg.geoip
    for role, db in (("country", found.country_db), ("ASN", found.asn_db)):
        if db is None:
            lines.append(f"No {role} database found in /var/lib/GeoIP or /usr/share/GeoIP.")
        else:
            lines.append(f"The {role} database found: {db}.")
            geo = (
                replace(geo, country_db=Path(str(db)))
                if role == "country"
                else replace(geo, asn_db=Path(str(db)))
            )
    if found.country_db is None or found.asn_db is None:
        lines.append("Without one, its columns say N/A.")
    lines += [
        "`mlsd geoip update` downloads free databases (DB-IP Lite: no account) and keeps",
        "them current; Debian's geoipupdate (a free MaxMind account) works too.",
    ]
    why[("geoip", "")] = lines
    return replace(cfg, geoip=geo)


def _service_gid(root: Path, groups: tuple[str, ...]) -> int | None:
    """The group the written file gets, so that the service's user may read it (the unit
    makes up its user: only its supplementary groups are known); None: leave it be."""
    if os.geteuid() != 0:
        return None
    return next((g for g in (setupprobe.gid_of(root, n) for n in groups) if g is not None), None)


def write_config(path: Path, data: bytes, *, gid: int | None, stamp: datetime) -> Path | None:
    """Write `path` (0640, group `gid`) atomically; keep an existing file as PATH.STAMP
    first (its mode narrowed to 0640 at most, its owner kept). Returns the copy's path."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise MlsdError(
            f"{path} is {what}: setup writes only a regular file it does not reach through "
            "a link; give the real path with -o"
        )
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o755, parents=True)
    kept = None
    if st is not None:
        kept = _keep(path, read_file(path), st, stamp)
    tmp = path.with_name(f".{path.name}.setup.tmp")
    fd = create_temp(tmp, 0o600)
    try:
        write_all(fd, data)
        if gid is not None:
            os.fchown(fd, -1, gid)
        os.fchmod(fd, 0o640)  # exactly, whatever the umask
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return kept


def _keep(path: Path, data: bytes, st: os.stat_result, stamp: datetime) -> Path:
    base = f"{path}.{stamp:%Y%m%d-%H%M%S}"
    for n in range(100):
        copy = Path(base if n == 0 else f"{base}-{n}")
        try:
            fd = open_nofollow(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            write_all(fd, data)
            if os.geteuid() == 0:
                os.fchown(fd, st.st_uid, st.st_gid)
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o640)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
        return copy
    raise MlsdError(f"{base}: a copy of the existing config under this name exists 100 times")
