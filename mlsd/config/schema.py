"""What a configuration holds: one frozen dataclass per INI section, and the closed choices.

Every key's value has a type here; a key that takes one of a few words has a `Literal`
type, so a comparison against a word that is not a choice (`cfg.dns.reverse == "lokup"`)
is a type error, not a branch that never runs. Secrets live in `Secret`, whose repr is
`***`, so no log line or `check-config` output can show them. Reading and checking the
INI file is `mlsd.config.reader`'s job; the key names and their parsers are in
`mlsd.config.keys`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import time, tzinfo
from pathlib import Path
from typing import Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mlsd.journalmatch import DEFAULT_MATCH

DEFAULT_PATH: Final = Path("/etc/mlsd/mlsd.conf")

# The closed choices, each spelt as the config file spells it (the order is the order
# an error message lists them in).
SourceKind = Literal["file", "journal"]
"""`[source] type`: the mail log file, or the systemd journal (issue 18)."""
DateFormat = Literal["iso", "maillogsentinel"]
"""[csv] date_format."""
ReverseMode = Literal["postfix", "lookup", "off"]
"""[dns] reverse: the name Postfix logged, mlsd's own PTR lookup, or none."""
Attach = Literal["day", "none", "full"]
"""[report] attach: which CSV rides along with the report."""
Security = Literal["none", "starttls", "tls"]
"""[smtp] security."""
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
"""[log] level (the file may spell it in lower case)."""
LogFormat = Literal["auto", "console", "json", "journal"]
"""[log] format."""
StartAt = Literal["beginning", "end"]
"""[follow] start_at."""
GeoipProvider = Literal["dbip", "maxmind", "ipinfo"]
"""[geoip] provider: where `mlsd geoip update` downloads from (issue 21)."""


class Secret:
    """A value that must never be printed: its repr and str are `***`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself — for the one place that hands it to the SMTP client."""
        return self._value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class PathsConfig:
    """Where mlsd reads and writes."""

    mail_log: Path = Path("/var/log/mail.log")
    csv: Path = Path("/var/log/mlsd/mlsd.csv")
    state_dir: Path = Path("/var/lib/mlsd")
    logins_csv: Path | None = None
    """The successful logins' CSV (the sentinel); None = `logins.csv` beside `csv`."""

    def logins(self) -> Path:
        """`logins_csv`, or `logins.csv` in the failures CSV's directory."""
        return self.logins_csv or self.csv.with_name("logins.csv")


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceConfig:
    """Where the mail log comes from, and how to read its timestamps."""

    timezone: str = ""
    """Zone of stamps without an offset (classic syslog, postlogd); empty = the system's."""
    kind: SourceKind = "file"
    """`type` in the file: `file` ([paths] mail_log) or `journal` (the systemd journal)."""
    journal_directory: Path | None = None
    """A directory of journal files to read; None = the system journal."""
    journal_match: tuple[str, ...] = DEFAULT_MATCH
    """Which journal entries are mail (see mlsd.journalmatch)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CsvConfig:
    """How rows are written."""

    date_format: DateFormat = "iso"
    max_field_length: int = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class GeoipConfig:
    """MaxMind-format databases (MMDB)."""

    country_db: Path = Path("/var/lib/GeoIP/GeoLite2-Country.mmdb")
    asn_db: Path = Path("/var/lib/GeoIP/GeoLite2-ASN.mmdb")
    update: bool = False
    """The daemon downloads and installs the databases every `update_interval_days`."""
    provider: GeoipProvider = "dbip"
    update_interval_days: int = 7
    account_id: str = ""
    """MaxMind account id (provider maxmind)."""
    license_key_file: Path | None = None
    """File holding the MaxMind licence key (never logged)."""
    token_file: Path | None = None
    """File holding the IPinfo token (never logged)."""
    download_base: str = ""
    """Base URL replacing the provider's (a mirror, a proxy, the tests); empty = the provider's."""
    max_download: int = 256
    """MiB a download (and its decompressed database) may reach before it is refused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsConfig:
    """Where the client hostname comes from; how live PTR lookups behave (`reverse = lookup`)."""

    reverse: ReverseMode = "postfix"
    servers: tuple[str, ...] = ()
    """Resolvers for `lookup` (`IP` or `IP:port`, IPv6 as `[IP]:port`); empty = /etc/resolv.conf."""
    timeout: float = 2.0
    """Hard limit in seconds on one lookup, and so on one batch's wait."""
    concurrency: int = 50
    """Lookups in flight at once."""
    cache_size: int = 10000
    """IPs remembered (answers and failures); the least recently used are dropped first."""
    cache_ttl: float = 3600.0
    """How long an answer (a name, or NXDOMAIN) is reused, in seconds."""
    failure_ttl: float = 300.0
    """How long a timeout or resolver error is reused before the IP is asked again."""
    forward_confirm: bool = False
    """Keep a PTR name only if it resolves back to the IP (what Postfix does)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportConfig:
    """The daily report."""

    time: time = time(0, 15)
    timezone: str = ""
    to: tuple[str, ...] = ()
    sender: str = ""
    """`from` in the file (a Python keyword, hence the attribute name)."""
    subject_prefix: str = "[mlsd]"
    attach: Attach = "day"
    top: int = 10
    """Entries in each top-N list before "… and N more"."""
    mask_usernames: bool = False
    """Show usernames as `a***` (domain kept) in the report and its day attachment."""
    gzip_above: int = 256
    """Attach the day's CSV gzipped when it is larger than this many KiB (0: always)."""
    max_memory: int = 1024
    """MiB of address space the daemon's report build (a child process) may use."""
    fleet: bool = False
    """Also mail the fleet report of each day, after this node's ([fleet] url must be set;
    one node of the fleet should say yes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    """How the report is delivered."""

    host: str = "localhost"
    port: int = 25
    security: Security = "none"
    username: str = ""
    password: Secret | None = field(default=None, compare=False)
    password_file: Path | None = None
    timeout: float = 30.0
    ca_file: Path | None = None
    """CA bundle to trust instead of the system's (a private CA, a self-signed relay)."""
    retry_hours: float = 48.0
    """How long a report that could not be delivered is retried before it is set aside."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    """mlsd's own log."""

    level: LogLevel = "INFO"
    format: LogFormat = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowConfig:
    """How the log is followed."""

    start_at: StartAt = "beginning"
    """First start without a checkpoint: read the live file from its `beginning` or `end`."""
    import_rotated: bool = False
    """First start: also read the rotated files (mail.log.1, .2.gz, …), oldest first, once."""
    reconcile_interval: float = 5.0
    """Seconds between the safety-net `stat`s that catch what inotify missed."""
    rotate_grace: float = 1.0
    """Seconds a renamed log must stay unwritten before it is sealed (the writer may lag)."""
    rotated_dir: Path | None = None
    """Where logrotate's `olddir` puts the rotated logs, if not beside the log."""


@dataclass(frozen=True, slots=True)
class Listen:
    """An address and port to listen on: an IP literal, never a name (no DNS at start)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """The Prometheus endpoint (mlsd.metrics)."""

    listen: Listen | None = None
    """Where `/metrics` is served; None (the default): not served."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreConfig:
    """The SQLite event store every node keeps (issue 19)."""

    path: Path | None = None
    """The SQLite file; None = `<state_dir>/events.sqlite3`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetConfig:
    """The fleet's shared PostgreSQL (issue 19): off while `url` is empty."""

    url: str = ""
    """`postgresql://role@host/db`, never with a password (the reader refuses one)."""
    node: str = ""
    """This mlsd's name in the fleet (and its role's name); empty = the host's name."""
    password_file: Path | None = None
    password: Secret | None = field(default=None, compare=False)
    """Read from `password_file` at start and reload; not a key of the file."""
    keep_months: int = 0
    """Months kept (the current one and those before); 0 = all. Needs the owner role."""

    def node_name(self) -> str:
        """`node`, or the host's name (the kernel's, as socket.gethostname() reads it on
        Linux, without importing socket into every command's start)."""
        return self.node or os.uname().nodename


@dataclass(frozen=True, slots=True, kw_only=True)
class SentinelConfig:
    """The sentinel (issue 20): which logins are kept, the rules' thresholds, where alerts go.

    The defaults are meant to be quiet on a normal server (README, "Sentinel")."""

    alerts: bool = True
    """Run the rules and send alert mail (`no`: logins are still recorded)."""
    record_logins: bool = True
    """Write successful logins to the logins CSV and the store (personal data: `no` keeps
    none; the rules then judge only from what they saw since start)."""
    keep_days: int = 90
    """Days of logins kept in the store (the CSV is the journal: rotate it as you wish)."""
    to: tuple[str, ...] = ()
    """Alert recipients; empty = `[report] to`."""
    quiet_minutes: int = 60
    """After an alert for (user, rule), further ones are held back this long."""
    failures: int = 10
    """success_after_failures: failures for the user (from any IPs), or from the IP (for
    any users), within `failure_window`, before a login; 0 turns the rule off."""
    failure_window: int = 60
    """Minutes (success_after_failures)."""
    history_days: int = 30
    """new_country / new_network / send_burst compare with this many days of the user's own."""
    min_history_days: int = 7
    """new_country / new_network judge a user only once their first login seen is this old."""
    min_history_logins: int = 5
    """… and they have this many logins in `history_days`."""
    new_country: bool = True
    new_network: bool = True
    max_ips: int = 10
    """many_sources: distinct IPs a user logs in from in a day (0: off)."""
    max_countries: int = 3
    """many_sources: distinct countries in a day (0: off)."""
    send_floor: int = 200
    """send_burst: recipients submitted by a user in an hour must exceed this (0: off) …"""
    send_multiple: float = 5.0
    """… and this multiple of the user's highest hour in `history_days`."""
    ignore_networks: tuple[str, ...] = ()
    """CIDR networks never alerted on (known VPNs, the office)."""
    ignore_users: tuple[str, ...] = ()
    """Usernames never alerted on (service accounts)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration, validated."""

    source_file: Path | None = None
    paths: PathsConfig = PathsConfig()
    source: SourceConfig = SourceConfig()
    csv: CsvConfig = CsvConfig()
    geoip: GeoipConfig = GeoipConfig()
    dns: DnsConfig = DnsConfig()
    report: ReportConfig = ReportConfig()
    smtp: SmtpConfig = SmtpConfig()
    log: LogConfig = LogConfig()
    follow: FollowConfig = FollowConfig()
    metrics: MetricsConfig = MetricsConfig()
    store: StoreConfig = StoreConfig()
    fleet: FleetConfig = FleetConfig()
    sentinel: SentinelConfig = SentinelConfig()

    def log_tz(self) -> tzinfo:
        """The zone of the log's offset-less stamps."""
        return resolve_tz(self.source.timezone)

    def report_tz(self) -> tzinfo:
        """The zone the report's days are cut in."""
        return resolve_tz(self.report.timezone)


def resolve_tz(name: str) -> tzinfo:
    """A zone by IANA name; empty means the system's (TZ, then /etc/localtime, else UTC)."""
    if name:
        return ZoneInfo(name)
    env = os.environ.get("TZ", "").lstrip(":")
    if env:
        try:
            return ZoneInfo(env)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as fh:
            return ZoneInfo.from_file(fh, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")
