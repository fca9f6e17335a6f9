"""The INI file's interface: each section's keys, the attribute each sets, and its value parser.

The key names are the interface (mlsd.8 lists them, a test holds the two together). Each
value parser takes the raw text and returns the value or raises ValueError with the
"expected …" part of the message, which `mlsd.config.reader` completes with the file,
section and key. `render` writes a configuration back out, for `check-config`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import time
from pathlib import Path
from typing import Any, Final, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from mlsd.config import netkeys
from mlsd.config.schema import (
    Attach,
    Config,
    CsvConfig,
    DateFormat,
    DnsConfig,
    FleetConfig,
    FollowConfig,
    GeoipConfig,
    GeoipProvider,
    LogConfig,
    LogFormat,
    LogLevel,
    MetricsConfig,
    PathsConfig,
    ReportConfig,
    ReverseMode,
    Secret,
    Security,
    SentinelConfig,
    SmtpConfig,
    SourceConfig,
    SourceKind,
    StartAt,
    StoreConfig,
)
from mlsd.journalmatch import parse_terms

# ---- value parsers


def _str(raw: str) -> str:
    return raw


def _path(raw: str) -> Path:
    if not raw:
        raise ValueError("a file path")
    return Path(raw)


def _opt_path(raw: str) -> Path | None:
    return Path(raw) if raw else None


def _choice(choices: object, fold: Callable[[str], str] = str.lower) -> Callable[[str], str]:
    """A parser for one of the words of a `Literal` choice (schema.py), in any case."""
    options: tuple[str, ...] = get_args(choices)

    def parse(raw: str) -> str:
        value = fold(raw)
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


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0"):
        return False
    raise ValueError("yes or no")


def _names(raw: str) -> tuple[str, ...]:
    # Comma- or space-separated; a username holds neither.
    return tuple(n for n in raw.replace(",", " ").split() if n)


def _secret(raw: str) -> Secret | None:
    return Secret(raw) if raw else None


# section → key → (dataclass attribute, parser).
SCHEMA: Final[dict[str, tuple[type[Any], dict[str, tuple[str, Callable[[str], Any]]]]]] = {
    "paths": (
        PathsConfig,
        {
            "mail_log": ("mail_log", _path),
            "csv": ("csv", _path),
            "state_dir": ("state_dir", _path),
            "logins_csv": ("logins_csv", _opt_path),
        },
    ),
    "source": (
        SourceConfig,
        {
            "timezone": ("timezone", _zone),
            "type": ("kind", _choice(SourceKind)),
            "journal_directory": ("journal_directory", _opt_path),
            "journal_match": ("journal_match", parse_terms),
        },
    ),
    "csv": (
        CsvConfig,
        {
            "date_format": ("date_format", _choice(DateFormat)),
            "max_field_length": ("max_field_length", _int_range(16, 4096)),
        },
    ),
    "geoip": (
        GeoipConfig,
        {
            "country_db": ("country_db", _path),
            "asn_db": ("asn_db", _path),
            "update": ("update", _bool),
            "provider": ("provider", _choice(GeoipProvider)),
            "update_interval_days": ("update_interval_days", _int_range(1, 365)),
            "account_id": ("account_id", netkeys.account_id),
            "license_key_file": ("license_key_file", _opt_path),
            "token_file": ("token_file", _opt_path),
            "download_base": ("download_base", netkeys.base_url),
            "max_download": ("max_download", _int_range(1, 4096)),
        },
    ),
    "dns": (
        DnsConfig,
        {
            "reverse": ("reverse", _choice(ReverseMode)),
            "servers": ("servers", netkeys.servers),
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
            "attach": ("attach", _choice(Attach)),
            "top": ("top", _int_range(1, 1000)),
            "mask_usernames": ("mask_usernames", _bool),
            "gzip_above": ("gzip_above", _int_range(0, 1_048_576)),
            "max_memory": ("max_memory", _int_range(256, 1_048_576)),
            "fleet": ("fleet", _bool),
        },
    ),
    "smtp": (
        SmtpConfig,
        {
            "host": ("host", _str),
            "port": ("port", _int_range(1, 65535)),
            "security": ("security", _choice(Security)),
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
            "level": ("level", _choice(LogLevel, str.upper)),
            "format": ("format", _choice(LogFormat)),
        },
    ),
    "follow": (
        FollowConfig,
        {
            "start_at": ("start_at", _choice(StartAt)),
            "import_rotated": ("import_rotated", _bool),
            "reconcile_interval": ("reconcile_interval", _within(0.1, 3600)),
            "rotate_grace": ("rotate_grace", _within(0.1, 600)),
            "rotated_dir": ("rotated_dir", _opt_path),
        },
    ),
    "metrics": (MetricsConfig, {"listen": ("listen", netkeys.listen)}),
    "store": (StoreConfig, {"path": ("path", _opt_path)}),
    "fleet": (
        FleetConfig,
        {
            "url": ("url", netkeys.fleet_url),
            "node": ("node", netkeys.node),
            "password_file": ("password_file", _opt_path),
            "keep_months": ("keep_months", _int_range(0, 1200)),
        },
    ),
    "sentinel": (
        SentinelConfig,
        {
            "alerts": ("alerts", _bool),
            "record_logins": ("record_logins", _bool),
            "keep_days": ("keep_days", _int_range(1, 36500)),
            "to": ("to", _addresses),
            "quiet_minutes": ("quiet_minutes", _int_range(0, 7 * 1440)),
            "failures": ("failures", _int_range(0, 1_000_000)),
            "failure_window": ("failure_window", _int_range(1, 7 * 1440)),
            "history_days": ("history_days", _int_range(1, 365)),
            "min_history_days": ("min_history_days", _int_range(0, 365)),
            "min_history_logins": ("min_history_logins", _int_range(0, 1_000_000)),
            "new_country": ("new_country", _bool),
            "new_network": ("new_network", _bool),
            "max_ips": ("max_ips", _int_range(0, 1_000_000)),
            "max_countries": ("max_countries", _int_range(0, 300)),
            "send_floor": ("send_floor", _int_range(0, 100_000_000)),
            "send_multiple": ("send_multiple", _within(1, 10_000, "times")),
            "ignore_networks": ("ignore_networks", netkeys.networks),
            "ignore_users": ("ignore_users", _names),
        },
    ),
}

PATH_KEYS: Final = {
    ("paths", "mail_log"),
    ("paths", "csv"),
    ("paths", "state_dir"),
    ("geoip", "country_db"),
    ("geoip", "asn_db"),
    ("geoip", "license_key_file"),
    ("geoip", "token_file"),
    ("smtp", "password_file"),
    ("smtp", "ca_file"),
    ("follow", "rotated_dir"),
    ("source", "journal_directory"),
    ("store", "path"),
    ("fleet", "password_file"),
    ("paths", "logins_csv"),
}


def sections() -> Mapping[str, tuple[str, ...]]:
    """Every section and its keys, in schema order (for docs and `check-config`)."""
    return {name: tuple(keys) for name, (_, keys) in SCHEMA.items()}


def render(config: Config) -> str:
    """The effective configuration as INI, secrets masked (for `check-config`)."""
    out: list[str] = []
    if config.source_file is not None:
        out.append(f"# effective configuration of {config.source_file}")
    for section, (_, keys) in SCHEMA.items():
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
