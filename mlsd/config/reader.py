"""The INI configuration file → one frozen, validated `Config`, or a `ConfigError` naming the spot.

The file is read once; every key is checked against `mlsd.config.keys`, so a typo is an
error with a suggestion instead of a silent fallback to the default. Each error names the
file, the section and the key, and never shows a secret.
"""

from __future__ import annotations

import configparser
import io
import re
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Final, TypeVar

from mlsd.config.keys import PATH_KEYS, SCHEMA
from mlsd.config.schema import (
    Config,
    FleetConfig,
    FollowConfig,
    GeoipConfig,
    PathsConfig,
    Secret,
    SmtpConfig,
    SourceConfig,
)
from mlsd.errors import ConfigError
from mlsd.untrusted import is_safe, terminal

T = TypeVar("T")


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
        if section not in SCHEMA:
            raise ConfigError(
                f"{path}: unknown section [{terminal(section)}]{_suggest(section, SCHEMA)}",
                path=path,
                section=section,
            )
        cls, keys = SCHEMA[section]
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
                shown = "***" if key == "password" or (section, key) in _MASKED else repr(raw)
                raise ConfigError(
                    f"{path}: [{section}] {key} = {shown}: expected {exc}",
                    path=path,
                    section=section,
                    key=key,
                ) from None
            if (section, key) in PATH_KEYS and isinstance(value, Path):
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
    if parser.has_section("geoip"):
        parts["geoip"] = _geoip_updated(parts, parser, path)
    fleet: FleetConfig = parts.get("fleet", FleetConfig())
    if fleet.password_file is not None:
        secret = _read_password_file(fleet.password_file, path, "fleet")
        parts["fleet"] = _replace(fleet, password=secret)
    return Config(source_file=path, **parts)


# The file names each provider ships, for the paths the updater picks when none is set.
_PROVIDER_FILES: Final = {
    "dbip": ("dbip-country-lite.mmdb", "dbip-asn-lite.mmdb"),
    "maxmind": ("GeoLite2-Country.mmdb", "GeoLite2-ASN.mmdb"),
    "ipinfo": ("ipinfo_lite.mmdb", "ipinfo_lite.mmdb"),
}


def _geoip_updated(
    parts: dict[str, Any], parser: configparser.ConfigParser, path: Path
) -> GeoipConfig:
    """With the updater in use (`update` or `provider` set), an unset database path is in
    the state directory: the one place the shipped unit (ProtectSystem=strict) may write.
    The provider's credentials must be named when the daemon is to download on its own."""
    geo: GeoipConfig = parts["geoip"]
    if not (parser.has_option("geoip", "update") or parser.has_option("geoip", "provider")):
        return geo
    needs = {"maxmind": ("account_id", "license_key_file"), "ipinfo": ("token_file",)}
    for key in needs.get(geo.provider, ()) if geo.update else ():
        if not getattr(geo, key):
            raise ConfigError(
                f"{path}: [geoip] {key} is not set: provider {geo.provider} needs it "
                "(or set update = no)",
                path=path,
                section="geoip",
                key=key,
            )
    where = parts.get("paths", PathsConfig()).state_dir / "geoip"
    country, asn = _PROVIDER_FILES[geo.provider]
    changes: dict[str, Any] = {}
    if not parser.has_option("geoip", "country_db"):
        changes["country_db"] = where / country
    if not parser.has_option("geoip", "asn_db"):
        changes["asn_db"] = where / asn
    return _replace(geo, **changes)


_SECRET_KEYS: Final = frozenset({"password"})
# Values never echoed in an error because they may hold a secret (a url with a password is
# refused, and the refusal must not print it).
_MASKED: Final = frozenset({("fleet", "url")})
# What a secret may not hold: controls and line breaks (a continuation line, a stray ESC).
# Other characters are its own business: it is never printed.
_SECRET_BREAKS: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _check_characters(raw: str, path: Path, section: str, key: str) -> None:
    """One line of printable text, nothing else (issue 17, finding 7): a continuation line
    made `subject_prefix` a header break that failed every report, and a path holding a
    newline or ESC was printed raw by `check-config`, able to forge lines. A secret is
    never echoed, not even escaped, nor where the bad character sits."""
    if key in _SECRET_KEYS or (section, key) in _MASKED:
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
    return _replace(smtp, password=_read_password_file(smtp.password_file, path, "smtp"))


def _read_password_file(pf: Path, path: Path, section: str) -> Secret:
    """The secret in `[section] password_file`; errors never show any of its content."""
    try:
        secret = pf.read_text(encoding="utf-8").strip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"{path}: [{section}] password_file = {str(pf)!r}: cannot read it: {exc.strerror}",
            path=path,
            section=section,
            key="password_file",
        ) from None
    except UnicodeDecodeError:
        # Its message names the offending byte and its position: part of the secret.
        raise ConfigError(
            f"{path}: [{section}] password_file = {str(pf)!r}: not UTF-8 text "
            "(save the password as UTF-8; its content is not shown)",
            path=path,
            section=section,
            key="password_file",
        ) from None
    if _SECRET_BREAKS.search(secret):
        raise ConfigError(
            f"{path}: [{section}] password_file = {str(pf)!r}: the password holds a control "
            "character or a line break (only a final newline is ignored; content not shown)",
            path=path,
            section=section,
            key="password_file",
        )
    if not secret:
        raise ConfigError(
            f"{path}: [{section}] password_file = {str(pf)!r}: the file is empty",
            path=path,
            section=section,
            key="password_file",
        )
    return Secret(secret)


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
    """`; did you mean [report] to?`: the usual slip is a right key in the wrong section."""
    homes = [f"[{s}] {key}" for s, (_, keys) in SCHEMA.items() if s != section and key in keys]
    return f"; did you mean {' or '.join(homes)}?" if homes else ""
