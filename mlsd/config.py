"""The INI configuration file → one frozen, validated `Config`, or a `ConfigError` naming the spot.

The file is read once; every key is checked against a schema, so a typo is an error with a
suggestion instead of a silent fallback to the default. Secrets live in `Secret`, whose repr
is `***`, so no log line or `check-config` output can show them.
"""

from __future__ import annotations

import configparser
import io
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import time, tzinfo
from pathlib import Path
from typing import Any, Final, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mlsd.errors import ConfigError
from mlsd.journalmatch import DEFAULT_MATCH, parse_terms
from mlsd.untrusted import is_safe, terminal

DEFAULT_PATH: Final = Path("/etc/mlsd/mlsd.conf")

T = TypeVar("T")


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


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceConfig:
    """Where the mail log comes from, and how to read its timestamps."""

    timezone: str = ""
    """Zone of stamps without an offset (classic syslog, postlogd); empty = the system's."""
    kind: str = "file"
    """`type` in the file: `file` ([paths] mail_log) or `journal` (the systemd journal)."""
    journal_directory: Path | None = None
    """A directory of journal files to read; None = the system journal."""
    journal_match: tuple[str, ...] = DEFAULT_MATCH
    """Which journal entries are mail (see mlsd.journalmatch)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CsvConfig:
    """How rows are written."""

    date_format: str = "iso"
    max_field_length: int = 256


@dataclass(frozen=True, slots=True, kw_only=True)
class GeoipConfig:
    """MaxMind-format databases (MMDB)."""

    country_db: Path = Path("/var/lib/GeoIP/GeoLite2-Country.mmdb")
    asn_db: Path = Path("/var/lib/GeoIP/GeoLite2-ASN.mmdb")


@dataclass(frozen=True, slots=True, kw_only=True)
class DnsConfig:
    """Where the client hostname comes from; how live PTR lookups behave (`reverse = lookup`)."""

    reverse: str = "postfix"
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
    attach: str = "day"
    top: int = 10
    """Entries in each top-N list before "… and N more"."""
    mask_usernames: bool = False
    """Show usernames as `a***` (domain kept) in the report and its day attachment."""
    gzip_above: int = 256
    """Attach the day's CSV gzipped when it is larger than this many KiB (0: always)."""
    max_memory: int = 1024
    """MiB of address space the daemon's report build (a child process) may use."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpConfig:
    """How the report is delivered."""

    host: str = "localhost"
    port: int = 25
    security: str = "none"
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

    level: str = "INFO"
    format: str = "auto"


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowConfig:
    """How the log is followed."""

    start_at: str = "beginning"
    """First start without a checkpoint: read the live file from its `beginning` or `end`."""
    import_rotated: bool = False
    """First start: also read the rotated files (mail.log.1, .2.gz, …), oldest first, once."""
    reconcile_interval: float = 5.0
    """Seconds between the safety-net `stat`s that catch what inotify missed."""
    rotate_grace: float = 1.0
    """Seconds a renamed log must stay unwritten before it is sealed (the writer may lag)."""
    rotated_dir: Path | None = None
    """Where logrotate's `olddir` puts the rotated logs, if not beside the log."""


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

    def log_tz(self) -> tzinfo:
        """The zone of the log's offset-less stamps."""
        return resolve_tz(self.source.timezone)

    def report_tz(self) -> tzinfo:
        """The zone the report's days are cut in."""
        return resolve_tz(self.report.timezone)


# ---- value parsers: each takes the raw string and returns the value or raises ValueError
# with the "expected …" part of the message.


def _str(raw: str) -> str:
    return raw


def _path(raw: str) -> Path:
    if not raw:
        raise ValueError("a file path")
    return Path(raw)


def _opt_path(raw: str) -> Path | None:
    return Path(raw) if raw else None


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise ValueError("one of: " + ", ".join(options))
        return value

    return parse


def _int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"a whole number from {lo} to {hi}")
        return value

    return parse


def _within(lo: float, hi: float, unit: str = "seconds") -> Callable[[str], float]:
    # Bounded both ways: `reconcile_interval = 1e-300` spun a core and `timeout = 1e308`
    # hung `report --send` (issue 17, finding 7). The bounds are in mlsd.conf.example.
    expected = f"a number of {unit} greater than 0, from {lo:g} to {hi:g}"

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(expected) from None
        if not lo <= value <= hi:  # also refuses NaN and the infinities
            raise ValueError(expected)
        return value

    return parse


def _hhmm(raw: str) -> time:
    m = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", raw)
    if m is None:
        raise ValueError("a time of day as HH:MM, 00:00 to 23:59")
    return time(int(m[1]), int(m[2]))


def _zone(raw: str) -> str:
    if raw:
        try:
            ZoneInfo(raw)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "an IANA time zone name such as Europe/Paris, or empty" + _zone_hint(raw)
            ) from None
    return raw


def _zone_hint(raw: str) -> str:
    """`; did you mean 'Europe/Berlin'?` for a misspelt zone name, else nothing."""
    import difflib  # noqa: PLC0415 - only on an error
    from zoneinfo import available_timezones  # noqa: PLC0415 - reads the tz database

    close = difflib.get_close_matches(raw, sorted(available_timezones()), n=1, cutoff=0.8)
    return f"; did you mean {close[0]!r}?" if close else ""


_ADDRESS = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+")


def _address(raw: str) -> str:
    if raw and not _ADDRESS.fullmatch(raw):
        raise ValueError("an e-mail address such as mlsd@example.org")
    return raw


def _addresses(raw: str) -> tuple[str, ...]:
    parts = tuple(p for p in re.split(r"[,\s]+", raw) if p)
    for p in parts:
        if not _ADDRESS.fullmatch(p):
            raise ValueError("e-mail addresses separated by commas")
    return parts


def _level(raw: str) -> str:
    value = raw.upper()
    if value not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("one of: DEBUG, INFO, WARNING, ERROR")
    return value


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0"):
        return False
    raise ValueError("yes or no")


_SERVER = re.compile(
    r"\[(?P<v6>[^\]]+)\](?::(?P<v6port>\d{1,5}))?|(?P<v4>[\d.]+)(?::(?P<port>\d{1,5}))?"
)


def _servers(raw: str) -> tuple[str, ...]:
    """Resolver addresses, checked here so that a typo fails at start, not at lookup time."""
    expected = "IP addresses, optionally with :port (IPv6 as [IP]:port), separated by commas"
    out: list[str] = []
    for part in (p for p in re.split(r"[,\s]+", raw) if p):
        m = _SERVER.fullmatch(part)
        host, port = (m["v6"] or m["v4"], m["v6port"] or m["port"]) if m else (part, None)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(expected) from None
        if port is not None and not 0 < int(port) < 65536:
            raise ValueError(expected)
        out.append(part)
    return tuple(out)


def _secret(raw: str) -> Secret | None:
    return Secret(raw) if raw else None


# section → key → (dataclass attribute, parser). The key names are the interface.
_SCHEMA: Final[dict[str, tuple[type[Any], dict[str, tuple[str, Callable[[str], Any]]]]]] = {
    "paths": (
        PathsConfig,
        {"mail_log": ("mail_log", _path), "csv": ("csv", _path), "state_dir": ("state_dir", _path)},
    ),
    "source": (
        SourceConfig,
        {
            "timezone": ("timezone", _zone),
            "type": ("kind", _choice("file", "journal")),
            "journal_directory": ("journal_directory", _opt_path),
            "journal_match": ("journal_match", parse_terms),
        },
    ),
    "csv": (
        CsvConfig,
        {
            "date_format": ("date_format", _choice("iso", "maillogsentinel")),
            "max_field_length": ("max_field_length", _int_range(16, 4096)),
        },
    ),
    "geoip": (GeoipConfig, {"country_db": ("country_db", _path), "asn_db": ("asn_db", _path)}),
    "dns": (
        DnsConfig,
        {
            "reverse": ("reverse", _choice("postfix", "lookup", "off")),
            "servers": ("servers", _servers),
            "timeout": ("timeout", _within(0.05, 60)),
            "concurrency": ("concurrency", _int_range(1, 1000)),
            "cache_size": ("cache_size", _int_range(1, 10_000_000)),
            "cache_ttl": ("cache_ttl", _within(1, 7 * 86400)),
            "failure_ttl": ("failure_ttl", _within(1, 86400)),
            "forward_confirm": ("forward_confirm", _bool),
        },
    ),
    "report": (
        ReportConfig,
        {
            "time": ("time", _hhmm),
            "timezone": ("timezone", _zone),
            "to": ("to", _addresses),
            "from": ("sender", _address),
            "subject_prefix": ("subject_prefix", _str),
            "attach": ("attach", _choice("day", "none", "full")),
            "top": ("top", _int_range(1, 1000)),
            "mask_usernames": ("mask_usernames", _bool),
            "gzip_above": ("gzip_above", _int_range(0, 1_048_576)),
            "max_memory": ("max_memory", _int_range(256, 1_048_576)),
        },
    ),
    "smtp": (
        SmtpConfig,
        {
            "host": ("host", _str),
            "port": ("port", _int_range(1, 65535)),
            "security": ("security", _choice("none", "starttls", "tls")),
            "username": ("username", _str),
            "password": ("password", _secret),
            "password_file": ("password_file", _opt_path),
            "timeout": ("timeout", _within(1, 600)),
            "ca_file": ("ca_file", _opt_path),
            "retry_hours": ("retry_hours", _within(0.1, 720, "hours")),
        },
    ),
    "log": (
        LogConfig,
        {
            "level": ("level", _level),
            "format": ("format", _choice("auto", "console", "json", "journal")),
        },
    ),
    "follow": (
        FollowConfig,
        {
            "start_at": ("start_at", _choice("beginning", "end")),
            "import_rotated": ("import_rotated", _bool),
            "reconcile_interval": ("reconcile_interval", _within(0.1, 3600)),
            "rotate_grace": ("rotate_grace", _within(0.1, 600)),
            "rotated_dir": ("rotated_dir", _opt_path),
        },
    ),
}

_PATH_KEYS: Final = {
    ("paths", "mail_log"),
    ("paths", "csv"),
    ("paths", "state_dir"),
    ("geoip", "country_db"),
    ("geoip", "asn_db"),
    ("smtp", "password_file"),
    ("smtp", "ca_file"),
    ("follow", "rotated_dir"),
    ("source", "journal_directory"),
}


def sections() -> Mapping[str, tuple[str, ...]]:
    """Every section and its keys, in schema order (for docs and `check-config`)."""
    return {name: tuple(keys) for name, (_, keys) in _SCHEMA.items()}


def load(path: Path) -> Config:
    """Read and validate a config file. Raises ConfigError naming file, section and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found (create it from mlsd.conf.example, "
            "or pass another with -c PATH)",
            path=path,
        ) from None
    except PermissionError:
        raise ConfigError(
            f"{path}: permission denied reading the config file (run as a user that can read it)",
            path=path,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc}", path=path) from None
    return loads(text, path)


def salvage(path: Path) -> tuple[Config, list[ConfigError]]:
    """The configuration as far as it is valid, and its errors (none: all valid).

    For `mlsd status`, which must answer while the config has a typo, when the admin most
    needs to know whether the daemon (still on its previous config) is healthy: each key
    that is in error is dropped (its default stands in) until the rest loads. A file that
    cannot be read or is not INI at all gives the defaults.
    """
    try:
        return load(path), []
    except ConfigError as exc:
        errors = [exc]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return Config(source_file=path), errors
    for _ in range(100):  # each round drops a key or a section; a bound all the same
        parser = configparser.ConfigParser(
            interpolation=None, default_section="\0none", strict=False
        )
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(text, source=str(path))
        except configparser.Error:
            break
        try:
            return loads(text, path), errors
        except ConfigError as exc:
            if str(exc) != str(errors[-1]):
                errors.append(exc)
            if exc.section is None or not parser.has_section(exc.section):
                break
            if exc.key is not None and parser.has_option(exc.section, exc.key):
                parser.remove_option(exc.section, exc.key)
            else:
                parser.remove_section(exc.section)
        out = io.StringIO()
        parser.write(out)
        text = out.getvalue()
    return Config(source_file=path), errors


def loads(text: str, path: Path) -> Config:
    """Validate config text; `path` names it in errors and anchors relative paths."""
    parser = configparser.ConfigParser(
        interpolation=None, default_section="\0none", strict=True, empty_lines_in_values=False
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        parser.read_string(text, source=str(path))
    except configparser.DuplicateSectionError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}: section [{terminal(exc.section)}] appears twice", path=path
        ) from None
    except configparser.DuplicateOptionError as exc:
        raise ConfigError(
            f"{path}: [{terminal(exc.section)}] {terminal(exc.option)}: set twice "
            f"(line {exc.lineno})",
            path=path,
            section=exc.section,
            key=exc.option,
        ) from None
    except configparser.MissingSectionHeaderError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}: a key before any [section] header", path=path
        ) from None
    except configparser.Error as exc:
        raise ConfigError(
            f"{path}: not a valid INI file: {terminal(exc.message)}", path=path
        ) from None

    base = path.parent
    parts: dict[str, Any] = {}
    for section in parser.sections():
        if section not in _SCHEMA:
            raise ConfigError(
                f"{path}: unknown section [{terminal(section)}]{_suggest(section, _SCHEMA)}",
                path=path,
                section=section,
            )
        cls, keys = _SCHEMA[section]
        values: dict[str, Any] = {}
        for key, raw_value in parser.items(section):
            if key not in keys:
                raise ConfigError(
                    f"{path}: [{section}] unknown key {key!r}{_suggest(key, keys)}"
                    + _elsewhere(key, section),
                    path=path,
                    section=section,
                    key=key,
                )
            attr, parse = keys[key]
            raw = raw_value.strip()
            _check_characters(raw, path, section, key)
            try:
                value = parse(raw)
            except ValueError as exc:
                shown = "***" if key == "password" else repr(raw)
                raise ConfigError(
                    f"{path}: [{section}] {key} = {shown}: expected {exc}",
                    path=path,
                    section=section,
                    key=key,
                ) from None
            if (section, key) in _PATH_KEYS and isinstance(value, Path):
                value = value if value.is_absolute() else (base / value)
            values[attr] = value
        parts[section] = cls(**values)

    follow: FollowConfig = parts.get("follow", FollowConfig())
    if follow.rotated_dir is not None and (
        follow.rotated_dir.exists() and not follow.rotated_dir.is_dir()
    ):
        raise ConfigError(
            f"{path}: [follow] rotated_dir = {str(follow.rotated_dir)!r}: expected the "
            "directory logrotate's olddir moves the rotated logs to (this is not a directory)",
            path=path,
            section="follow",
            key="rotated_dir",
        )
    jdir = parts.get("source", SourceConfig()).journal_directory
    if jdir is not None and jdir.exists() and not jdir.is_dir():
        raise ConfigError(
            f"{path}: [source] journal_directory = {str(jdir)!r}: expected a directory of "
            "journal files, or empty for the system journal (this is not a directory)",
            path=path,
            section="source",
            key="journal_directory",
        )
    smtp: SmtpConfig = parts.get("smtp", SmtpConfig())
    if smtp.password is not None and smtp.password_file is not None:
        raise ConfigError(
            f"{path}: [smtp] password and password_file are both set: keep one "
            "(password_file keeps the secret out of this file)",
            path=path,
            section="smtp",
            key="password",
        )
    if smtp.password_file is not None:
        parts["smtp"] = _with_password_file(smtp, path)
    if smtp.username and smtp.password is None and smtp.password_file is None:
        raise ConfigError(
            f"{path}: [smtp] username is set but no password_file: set password_file "
            "(or remove username to send without AUTH)",
            path=path,
            section="smtp",
            key="username",
        )
    if smtp.password is not None or smtp.password_file is not None:
        if not smtp.username:
            raise ConfigError(
                f"{path}: [smtp] a password is set but no username",
                path=path,
                section="smtp",
                key="username",
            )
        if smtp.security == "none" and smtp.host not in ("localhost", "127.0.0.1", "::1"):
            raise ConfigError(
                f"{path}: [smtp] security = none would send the password in clear text to "
                f"{smtp.host}: expected starttls or tls",
                path=path,
                section="smtp",
                key="security",
            )
    return Config(source_file=path, **parts)


_SECRET_KEYS: Final = frozenset({"password"})
# What a secret may not hold: controls and line breaks (a continuation line, a stray ESC).
# Other characters are its own business: it is never printed.
_SECRET_BREAKS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _check_characters(raw: str, path: Path, section: str, key: str) -> None:
    """One line of printable text, nothing else (issue 17, finding 7): a continuation line
    made `subject_prefix` a header break that failed every report, and a path holding a
    newline or ESC was printed raw by `check-config`, able to forge lines. A secret is
    never echoed, not even escaped, nor where the bad character sits."""
    if key in _SECRET_KEYS:
        if _SECRET_BREAKS.search(raw):
            raise ConfigError(
                f"{path}: [{section}] {key}: expected one line without control characters "
                "(the value is not shown)",
                path=path,
                section=section,
                key=key,
            )
        return
    if not is_safe(raw):
        raise ConfigError(
            f"{path}: [{section}] {key} = '{terminal(raw)}': expected one line of printable "
            "text (no control character, line break or invisible character)",
            path=path,
            section=section,
            key=key,
        )


def _with_password_file(smtp: SmtpConfig, path: Path) -> SmtpConfig:
    assert smtp.password_file is not None  # noqa: S101 - narrowed by the caller
    pf = smtp.password_file
    try:
        secret = pf.read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"{path}: [smtp] password_file = {str(pf)!r}: cannot read it: {exc.strerror}",
            path=path,
            section="smtp",
            key="password_file",
        ) from None
    except UnicodeDecodeError:
        # Its message names the offending byte and its position: part of the secret.
        raise ConfigError(
            f"{path}: [smtp] password_file = {str(pf)!r}: not UTF-8 text "
            "(save the password as UTF-8; its content is not shown)",
            path=path,
            section="smtp",
            key="password_file",
        ) from None
    if _SECRET_BREAKS.search(secret):
        raise ConfigError(
            f"{path}: [smtp] password_file = {str(pf)!r}: the password holds a control "
            "character or a line break (only a final newline is ignored; content not shown)",
            path=path,
            section="smtp",
            key="password_file",
        )
    if not secret:
        raise ConfigError(
            f"{path}: [smtp] password_file = {str(pf)!r}: the file is empty",
            path=path,
            section="smtp",
            key="password_file",
        )
    return _replace(smtp, password=Secret(secret))


def _replace(obj: T, **changes: Any) -> T:
    values = {f.name: getattr(obj, f.name) for f in fields(obj)}  # type: ignore[arg-type]
    values.update(changes)
    return type(obj)(**values)


def _suggest(name: str, options: Mapping[str, Any]) -> str:
    import difflib  # noqa: PLC0415 - only on an error; every `mlsd` start would pay for it

    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    if close:
        return f": did you mean {close[0]!r}?"
    return ": expected one of " + ", ".join(options)


def _elsewhere(key: str, section: str) -> str:
    """`; 'to' is a key of [report]`: the usual slip is a right key in the wrong section."""
    homes = [f"[{name}]" for name, (_, keys) in _SCHEMA.items() if name != section and key in keys]
    return f"; {key!r} is a key of {' and '.join(homes)}" if homes else ""


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


def render(config: Config) -> str:
    """The effective configuration as INI, secrets masked (for `check-config`)."""
    out: list[str] = []
    if config.source_file is not None:
        out.append(f"# effective configuration of {config.source_file}")
    for section, (_, keys) in _SCHEMA.items():
        obj = getattr(config, section)
        out.append(f"\n[{section}]")
        for key, (attr, _) in keys.items():
            value = getattr(obj, attr)
            out.append(f"{key} = {_show(value)}")
    return "\n".join(out).lstrip("\n") + "\n"


def _show(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Secret):
        return "***"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value)
