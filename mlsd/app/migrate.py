"""A MailLogSentinel config (the INI file of mlsd's predecessor) → an equivalent mlsd config.

Admins switching over should not have to map settings by hand, nor guess which of their old
settings silently stopped mattering. So every old setting is either carried over (with a
comment naming where it came from) or listed as a `Note` saying why it has no equivalent and
what to do instead; the notes are also written at the end of the file, which documents itself.

Settings that decide where data comes from or goes (`mail_log`, the report's addresses) must
be right: an invalid one is a `ConfigError` for the admin to fix, never dropped. Tuning
settings (log level, DNS cache) that mlsd would refuse fall back to mlsd's default, with a note.
The output is deterministic (no date), so migrating twice gives the same file.
"""

from __future__ import annotations

import configparser
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mlsd import config
from mlsd.errors import ConfigError

# Where the result is meant to live; only used to validate single values with config.loads.
_TARGET: Final = Path("/etc/mlsd/mlsd.conf")

# MailLogSentinel's sections; an empty one of these is no loss, an empty other one is noted.
_SECTIONS: Final = {"paths", "report", "geolocation", "ASN_ASO", "general", "dns_cache"}
_UNKNOWN: Final = "no equivalent: unknown to MailLogSentinel's documented settings"
_GEO_DB: Final = (
    "mlsd reads MaxMind-format (MMDB) databases, not MailLogSentinel's CSV files: install "
    "geoipupdate for GeoLite2-Country and GeoLite2-ASN in /var/lib/GeoIP ([geoip] above), "
    "or point [geoip] at an IPinfo Lite or DB-IP Lite MMDB file."
)
_GEO_URL: Final = (
    "mlsd never downloads anything itself: geoipupdate (on its own timer) keeps the MMDB "
    "files current and replaces them atomically, which mlsd picks up."
)
_LOG_FILE: Final = (
    "mlsd logs to the journal, which journald rotates and caps, so it has no log file of "
    "its own to rotate."
)
_DNS_ENABLED: Final = (
    "MailLogSentinel looked up each client's PTR itself; mlsd by default uses the hostname "
    "Postfix already resolved and logged ([dns] reverse = postfix, no lookups), or does its "
    "own asynchronous, cached lookups with reverse = lookup (or none with reverse = off)."
)
_CRITICAL: Final = "mlsd's most severe level is ERROR, so ERROR is used instead."
_STATE_DIR: Final = (
    "mlsd keeps its own state (log position, report state) in /var/lib/mlsd, the unit's "
    "StateDirectory, and cannot reuse MailLogSentinel's offset file; set [follow] "
    "import_rotated = yes before the first start to import the rotated logs once."
)
_PREFIX_WHY: Final = (
    "MailLogSentinel's subjects began with [MailLogSentinel], mlsd's begin with [mlsd]: set "
    "[report] subject_prefix if a mail filter matches the old one."
)
_TIMERS: Final = "(systemd timers maillogsentinel.timer / maillogsentinel-report.timer)"
_TIMERS_WHY: Final = (
    "mlsd follows the log continuously and sends the daily report itself at [report] time "
    "(default 00:15), so disable the old timers: systemctl disable --now "
    "maillogsentinel.timer maillogsentinel-report.timer."
)


@dataclass(frozen=True)
class Note:
    """One old setting that has no equivalent in mlsd."""

    setting: str
    """Where it was, e.g. `[geolocation] country_db_path`."""
    value: str
    """Its value in the old file ("" if empty or not a key)."""
    why: str
    """One sentence: why there is no equivalent, or what to do instead."""


@dataclass(frozen=True)
class Migration:
    """The result of `migrate`."""

    text: str
    """The mlsd config file (valid for `config.loads`)."""
    notes: tuple[Note, ...]
    """Old settings with no equivalent, in the order of the old file, the timers last."""


def migrate(source_text: str, source_name: str) -> Migration:
    """Convert MailLogSentinel config text; `source_name` names it in errors and the header.

    Raises ConfigError if the text is not INI, a value spans lines, or a setting that must
    be carried over (mail log, report addresses) is invalid.
    """
    source = Path(source_name)
    # Values are literal (`%` is a character, as in mlsd); keys are case-insensitive as
    # MailLogSentinel's configparser read them; [DEFAULT] is just another (unknown) section.
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        parser.read_string(source_text, source=source_name)
    except configparser.DuplicateSectionError as exc:
        raise _error(source, f"line {exc.lineno}: section [{exc.section}] appears twice") from None
    except configparser.DuplicateOptionError as exc:
        raise _error(
            source, f"[{exc.section}] {exc.option}: set twice (line {exc.lineno})"
        ) from None
    except configparser.MissingSectionHeaderError as exc:
        raise _error(source, f"line {exc.lineno}: not INI: text before any [section]") from None
    except configparser.ParsingError as exc:
        raise _error(source, f"line {exc.errors[0][0]}: not INI: not `key = value`") from None
    except configparser.Error:
        raise _error(source, "not a valid INI file") from None

    keys: dict[str, dict[str, tuple[str, str]]] = {}  # section → key → (value, comment)
    notes: list[Note] = []

    def put(section: str, key: str, value: str, comment: str) -> None:
        keys.setdefault(section, {})[key] = (value, comment)

    def note(section: str, key: str, value: str, why: str) -> None:
        notes.append(Note(f"[{section}] {key}", value, why))

    for section in parser.sections():
        if section not in _SECTIONS and not parser.options(section):
            notes.append(Note(f"[{section}]", "", _UNKNOWN))
        for key, raw in parser.items(section):
            value = raw.strip()
            # Multi-line values (indented continuation lines) cannot be written back as one
            # `key = value` line, nor mean anything to MailLogSentinel.
            if len(value.splitlines()) > 1:
                raise _error(
                    source, f"[{section}] {key}: the value spans several lines", section, key
                )
            where = f"# from [{section}] {key}"
            match section, key:
                case "paths", "mail_log" if value:
                    # MailLogSentinel resolved a relative path against its cwd, mlsd against
                    # the config's directory: there is no right guess, the admin decides.
                    if not Path(value).is_absolute():
                        raise _invalid(source, section, key, value, "an absolute path")
                    put("paths", "mail_log", value, where)
                case "paths", "working_dir" | "csv_filename":
                    old_csv = Path(
                        parser.get("paths", "working_dir", fallback="/var/log/maillogsentinel"),
                        parser.get("paths", "csv_filename", fallback="maillogsentinel.csv"),
                    )
                    note(section, key, value, _csv_why(old_csv))
                case "paths", "state_dir":
                    note(section, key, value, _STATE_DIR)
                case "report", "email" | "report_sender_override" if value:
                    new = "to" if key == "email" else "from"
                    expected = _check("report", new, value)
                    if expected is not None:
                        # Dropping a recipient would silently lose every report.
                        raise _invalid(source, section, key, value, expected)
                    put("report", new, value, where)
                case "report", "report_subject_prefix":
                    put("report", "subject_prefix", value, where)
                case "general", "log_level" if value:
                    level = value.upper()
                    if level == "CRITICAL":
                        note(section, key, value, _CRITICAL)
                        level = "ERROR"
                    expected = _check("log", "level", level)
                    if expected is None:
                        put("log", "level", level, where)
                    else:
                        note(section, key, value, f"[log] level must be {expected}; INFO is used.")
                case "general", "log_file_max_bytes" | "log_file_backup_count":
                    note(section, key, value, _LOG_FILE)
                case ("geolocation", "country_db_path") | ("ASN_ASO", "asn_db_path"):
                    note(section, key, value, _GEO_DB)
                case ("geolocation", "country_db_url") | ("ASN_ASO", "asn_db_url"):
                    note(section, key, value, _GEO_URL)
                case "dns_cache", "enabled":
                    note(section, key, value, _DNS_ENABLED)
                case "dns_cache", "size" | "ttl_seconds" if value:
                    # Harmless with reverse = postfix, and right if the admin turns lookups on.
                    new = "cache_size" if key == "size" else "cache_ttl"
                    expected = _check("dns", new, value)
                    if expected is None:
                        put("dns", new, value, where)
                    else:
                        note(section, key, value, f"[dns] {new} must be {expected}; default used.")
                case (
                    ("paths", "mail_log")
                    | ("report", "email" | "report_sender_override")
                    | ("general", "log_level")
                    | ("dns_cache", "size" | "ttl_seconds")
                ):
                    pass  # empty: nothing to carry over, mlsd's default applies
                case _:
                    note(section, key, value, _UNKNOWN)

    # Written out although they are the defaults, so the admin sees where mlsd looks now.
    defaults = config.GeoipConfig()
    geo = "# mlsd's default: an MMDB file kept current by geoipupdate (see the notes below)"
    put("geoip", "country_db", str(defaults.country_db), geo)
    put("geoip", "asn_db", str(defaults.asn_db), geo)
    put("dns", "reverse", "postfix", "# mlsd's default: the hostname Postfix logged, no lookups")
    if not parser.get("report", "report_subject_prefix", fallback="").strip():
        # Easy to miss: a mail filter on the old subject would stop matching.
        notes.append(Note("[report] report_subject_prefix (not set)", "", _PREFIX_WHY))
    notes.append(Note(_TIMERS, "", _TIMERS_WHY))
    return Migration(_render(source_name, keys, notes), tuple(notes))


def _invalid(source: Path, section: str, key: str, value: str, expected: str) -> ConfigError:
    return _error(source, f"[{section}] {key} = {value!r}: expected {expected}", section, key)


def _error(
    source: Path, message: str, section: str | None = None, key: str | None = None
) -> ConfigError:
    return ConfigError(f"{source}: {message}", path=source, section=section, key=key)


def _check(section: str, key: str, value: str) -> str | None:
    """None if mlsd accepts `value` for `[section] key`, else what it expects instead.

    Asks mlsd's own validator, so the migration can never accept what mlsd would refuse.
    """
    try:
        config.loads(f"[{section}]\n{key} = {value}\n", _TARGET)
    except ConfigError as exc:
        return str(exc).partition(": expected ")[2] or str(exc)
    return None


def _csv_why(old_csv: Path) -> str:
    return (
        f"MailLogSentinel's CSV ({old_csv}) has other columns, so mlsd writes its own at "
        "[paths] csv (default /var/log/mlsd/mlsd.csv, the unit's LogsDirectory); keep the old "
        "file as an archive: its first nine columns are the same ([csv] date_format = "
        "maillogsentinel keeps the old date format)."
    )


def _render(
    source_name: str, keys: dict[str, dict[str, tuple[str, str]]], notes: list[Note]
) -> str:
    name = " ".join(source_name.splitlines())  # a comment line must stay one line
    out = [
        f"# mlsd configuration generated from {name} by `mlsd migrate-config`.",
        "# Keys not set here keep their defaults (see mlsd.conf.example).",
        "# Check it with: mlsd check-config -c /etc/mlsd/mlsd.conf",
    ]
    for section, names in config.sections().items():  # mlsd's order, not the old file's
        if section not in keys:
            continue
        out.append(f"\n[{section}]")
        for key in names:
            if key in keys[section]:
                value, comment = keys[section][key]
                out += [comment, f"{key} = {value}".rstrip()]
    out.append("\n# MailLogSentinel settings with no equivalent in mlsd:")
    for n in notes:
        out.append("#\n# " + n.setting + (f" = {n.value}" if n.value else ""))
        out += textwrap.wrap(n.why, 92, initial_indent="#   ", subsequent_indent="#   ")
    return "\n".join(out) + "\n"
