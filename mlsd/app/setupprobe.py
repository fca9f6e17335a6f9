"""What `mlsd setup` finds out about a machine: the mail log, who may read it, a local MTA,
the GeoIP databases and the time zone.

Every file is looked up under `root` (normally `/`), so the tests hand it fake machine
layouts in a temporary directory, and an admin can prepare the config of a mounted image.
The paths it reports are the machine's (`/var/log/mail.log`), never `root`-prefixed: they
go into the config the daemon reads on that machine. Only `postconf` (run when `root` is
`/`) and the MTA's port look at the live system.
"""

from __future__ import annotations

import grp
import os
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mlsd.config import GeoipConfig

UNIT_GROUPS: Final = ("adm", "systemd-journal")
"""The shipped unit's SupplementaryGroups= (contrib/systemd/mlsd.service; a test holds the
two together), for a machine where the unit is not installed yet."""

JOURNAL_GROUPS: Final = frozenset({"adm", "systemd-journal"})
"""Groups whose members journalctl lets read the system journal."""

MAIL_LOGS: Final = (PurePosixPath("/var/log/mail.log"), PurePosixPath("/var/log/maillog"))
"""Where syslog daemons write mail: Debian's rsyslog, then Red Hat's."""

GEOIP_DIRS: Final = (PurePosixPath("/var/lib/GeoIP"), PurePosixPath("/usr/share/GeoIP"))
# Other databases mlsd reads (type from metadata), by the names their publishers give them.
_COUNTRY_NAMES: Final = (
    "GeoLite2-Country.mmdb",
    "GeoIP2-Country.mmdb",
    "GeoLite2-City.mmdb",
    "GeoIP2-City.mmdb",
    "dbip-country-lite*.mmdb",
    "dbip-city-lite*.mmdb",
    "ipinfo_lite.mmdb",
)
_ASN_NAMES: Final = ("GeoLite2-ASN.mmdb", "dbip-asn-lite*.mmdb", "ipinfo_lite.mmdb")


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFile:
    """A mail log file that exists, and who may read it."""

    path: PurePosixPath
    owner: str
    group: str
    mode: int
    service_reads: bool
    """Whether the service's user (its groups, or others' bits) may read it."""

    def mode_text(self) -> str:
        """`root:adm 0640`."""
        return f"{self.owner}:{self.group} {self.mode:04o}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Findings:
    """What was found; `None` or empty where nothing was."""

    root: Path
    maillog_file: PurePosixPath | None
    """Postfix's `maillog_file` (postlogd writes its log there itself)."""
    maillog_from: str = ""
    """Where maillog_file was read: `postconf -h maillog_file` or the main.cf path."""
    logs: tuple[LogFile, ...] = ()
    """The candidate files that exist, best first."""
    rsyslog_mail: bool = False
    """rsyslog is configured to write /var/log/mail.log (it appears with the first line)."""
    journal_dir: PurePosixPath | None = None
    """/var/log/journal (persistent) or /run/log/journal, if either exists."""
    unit_groups: tuple[str, ...] = UNIT_GROUPS
    unit_from: str = ""
    """The installed unit the groups were read from; empty: the shipped unit's."""
    mta: str | None = None
    """`HOST:PORT` where a connection was accepted, or None."""
    mta_tried: str = ""
    country_db: PurePosixPath | None = None
    asn_db: PurePosixPath | None = None
    timezone: str = ""
    timezone_from: str = ""
    root_alias: tuple[str, ...] = ()
    """Addresses root's mail goes to (/etc/aliases): offered at the recipients prompt."""


def probe(root: Path, *, mta: tuple[str, int], timeout: float = 1.0) -> Findings:
    """Inspect the machine under `root`, and whether anything accepts connections at `mta`."""
    groups, unit_from = _unit_groups(root)
    maillog, maillog_from = _maillog_file(root)
    candidates = ([maillog] if maillog is not None else []) + [p for p in MAIL_LOGS if p != maillog]
    logs = tuple(f for f in (_log_file(root, p, groups) for p in candidates) if f is not None)
    country = _first_db(root, _COUNTRY_NAMES, GeoipConfig().country_db)
    asn = _first_db(root, _ASN_NAMES, GeoipConfig().asn_db)
    zone, zone_from = _timezone(root)
    host, port = mta
    return Findings(
        root=root,
        maillog_file=maillog,
        maillog_from=maillog_from,
        logs=logs,
        rsyslog_mail=_rsyslog_writes_mail_log(root),
        journal_dir=next(
            (
                d
                for d in (PurePosixPath("/var/log/journal"), PurePosixPath("/run/log/journal"))
                if _at(root, d).is_dir()
            ),
            None,
        ),
        unit_groups=groups,
        unit_from=unit_from,
        mta=f"{host}:{port}" if _listens(host, port, timeout) else None,
        mta_tried=f"{host}:{port}",
        country_db=country,
        asn_db=asn,
        timezone=zone,
        timezone_from=zone_from,
        root_alias=_root_alias(root),
    )


def gid_of(root: Path, name: str) -> int | None:
    """The machine's gid of group `name` (for the written config's group), or None."""
    if root == Path("/"):
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            return None
    try:
        lines = _at(root, PurePosixPath("/etc/group")).read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":")
        if len(parts) > 2 and parts[0] == name and parts[2].isdecimal():
            return int(parts[2])
    return None


def _root_alias(root: Path) -> tuple[str, ...]:
    """The full addresses in /etc/aliases' `root:` entry (local names are left out)."""
    try:
        text = _at(root, PurePosixPath("/etc/aliases")).read_text(errors="replace")
    except OSError:
        return ()
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        if colon and name.strip() == "root":
            return tuple(
                a for a in (p.strip() for p in rest.split(",")) if "@" in a and a.isprintable()
            )
    return ()


def _at(root: Path, path: PurePosixPath) -> Path:
    """`path` of the machine, as seen from here."""
    return root / str(path).lstrip("/")


def _maillog_file(root: Path) -> tuple[PurePosixPath | None, str]:
    """Postfix's maillog_file: postconf's answer on this machine (it expands `$names` and
    knows the defaults), else the literal value in main.cf."""
    postconf = shutil.which("postconf") if root == Path("/") else None
    if postconf is not None:
        try:
            out = subprocess.run(
                [postconf, "-h", "maillog_file"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            out = None
        if out is not None and out.returncode == 0:
            value = out.stdout.strip()
            ok = value.startswith("/") and value.isprintable()
            return (PurePosixPath(value) if ok else None), ("postconf -h maillog_file")
    main_cf = PurePosixPath("/etc/postfix/main.cf")
    try:
        text = _at(root, main_cf).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, ""
    value = ""
    for line in text.splitlines():
        name, eq, rest = line.partition("=")
        if eq and not line[:1].isspace() and name.strip() == "maillog_file":
            value = rest.strip()  # the last one wins, as in Postfix
    if value.startswith("/") and "$" not in value and value.isprintable():
        return PurePosixPath(value), str(main_cf)
    return None, str(main_cf)


def describe_log(root: Path, path: PurePosixPath, groups: tuple[str, ...]) -> LogFile | None:
    """Owner, group, mode of the regular file `path`, and whether `groups` may read it."""
    return _log_file(root, path, groups)


def _log_file(root: Path, path: PurePosixPath, groups: tuple[str, ...]) -> LogFile | None:
    try:
        st = os.stat(_at(root, path))
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    group = _name(root, "group", st.st_gid)
    mode = stat.S_IMODE(st.st_mode)
    reads = bool(mode & 0o004) or (bool(mode & 0o040) and group in groups)
    return LogFile(
        path=path,
        owner=_name(root, "passwd", st.st_uid),
        group=group,
        mode=mode,
        service_reads=reads,
    )


def _name(root: Path, db: str, number: int) -> str:
    """A uid's or gid's name in the machine's /etc/passwd or /etc/group (with NSS on `/`)."""
    if root == Path("/") and db == "group":
        try:
            return grp.getgrgid(number).gr_name
        except KeyError:
            return str(number)
    try:
        lines = _at(root, PurePosixPath("/etc") / db).read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        parts = line.split(":")
        if len(parts) > 2 and parts[2] == str(number):
            return parts[0]
    return str(number)


def _unit_groups(root: Path) -> tuple[tuple[str, ...], str]:
    """SupplementaryGroups= of the installed unit and its drop-ins (an empty assignment
    resets the list, as systemd reads it), else the shipped unit's."""
    unit = PurePosixPath("/etc/systemd/system/mlsd.service")
    drop_ins = unit.parent / "mlsd.service.d"
    files = [unit, *sorted(drop_ins / p.name for p in _at(root, drop_ins).glob("*.conf"))]
    groups: list[str] = []
    found = ""
    for f in files:
        try:
            text = _at(root, f).read_text(errors="replace")
        except OSError:
            continue
        found = found or str(f)
        for line in text.splitlines():
            key, eq, value = line.strip().partition("=")
            if eq and key.strip() == "SupplementaryGroups":
                groups = groups + value.split() if value.strip() else []
    return (tuple(groups), found) if found else (UNIT_GROUPS, "")


def _rsyslog_writes_mail_log(root: Path) -> bool:
    """rsyslog is installed with a rule writing /var/log/mail.log (Debian's `mail.*`)."""
    confs = [_at(root, PurePosixPath("/etc/rsyslog.conf"))]
    confs += sorted(_at(root, PurePosixPath("/etc/rsyslog.d")).glob("*.conf"))
    for conf in confs:
        try:
            text = conf.read_text(errors="replace")
        except OSError:
            continue
        for raw in text.splitlines():
            line = raw.split("#", 1)[0]
            if "mail." in line and str(MAIL_LOGS[0]) in line:
                return True
    return False


def _first_db(root: Path, names: tuple[str, ...], default: Path) -> PurePosixPath | None:
    """The configured default if it is there, else the first other known database."""
    first = PurePosixPath(default)
    if _at(root, first).is_file():
        return first
    for d in GEOIP_DIRS:
        for name in names:
            hits = sorted(_at(root, d).glob(name), reverse=True)  # newest dated name first
            for hit in hits:
                if hit.is_file():
                    return d / hit.name
    return None


def _timezone(root: Path) -> tuple[str, str]:
    """Debian's /etc/timezone, else the zone /etc/localtime links to; only a zone this
    Python knows (the config's check would refuse another)."""
    tz = PurePosixPath("/etc/timezone")
    try:
        name = _at(root, tz).read_text(errors="replace").strip().splitlines()[0].strip()
        if _known(name):
            return name, str(tz)
    except (OSError, IndexError):
        pass
    lt = PurePosixPath("/etc/localtime")
    try:
        target = os.readlink(_at(root, lt))
    except OSError:
        return "", ""
    _, sep, name = target.partition("zoneinfo/")
    if sep and _known(name):
        return name, f"{lt} -> {target}"
    return "", ""


def _known(name: str) -> bool:
    if not name or name.startswith("/") or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _listens(host: str, port: int, timeout: float) -> bool:
    """Whether something accepts a TCP connection there (nothing is sent)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
