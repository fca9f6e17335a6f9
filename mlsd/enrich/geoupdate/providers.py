"""Where each provider publishes its databases: one download per role, and how to ask for it.

DB-IP Lite needs no account (monthly files named by month, CC BY 4.0: the report credits
it, see mlsd.report.compose); MaxMind GeoLite2 needs an account id and a licence key (HTTP basic
authentication, a tar.gz holding the .mmdb); IPinfo Lite needs a token and ships one file
that answers both roles. The secrets are read from their files here, at download time, and
only ever leave in a request header or query: never in a log line (`Download.shown`).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Final
from urllib.parse import quote

from mlsd.config import GeoipConfig
from mlsd.errors import ConfigError

DEFAULT_BASE: Final = {
    "dbip": "https://download.db-ip.com/free",
    "maxmind": "https://download.maxmind.com",
    "ipinfo": "https://ipinfo.io",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Download:
    """One file to fetch for one or more roles."""

    roles: tuple[str, ...]
    """`country`, `asn`, or both (IPinfo)."""
    urls: tuple[str, ...]
    """Tried in order until one exists (DB-IP: this month's file, then last month's)."""
    shown: str
    """The URL as it may be logged: no token, no key."""
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    """Sent to the first host only, never to where it redirects (the key stays with it)."""
    dated: bool = False
    """The URL names the month (DB-IP): a file installed from it is never asked for again."""


def downloads(cfg: GeoipConfig, today: date, *, config_path: Path | None = None) -> list[Download]:
    """What to fetch for `cfg.provider`; ConfigError when a credential is missing."""
    base = cfg.download_base or DEFAULT_BASE[cfg.provider]
    if cfg.provider == "dbip":
        this = f"{today:%Y-%m}"
        last = f"{(today.replace(day=1) - _ONE_DAY):%Y-%m}"
        out = []
        for role, kind in (("country", "country"), ("asn", "asn")):
            urls = tuple(f"{base}/dbip-{kind}-lite-{month}.mmdb.gz" for month in (this, last))
            out.append(Download(roles=(role,), urls=urls, shown=urls[0], dated=True))
        return out
    if cfg.provider == "maxmind":
        key = _secret(cfg, "license_key_file", config_path)
        if not cfg.account_id:
            raise _missing("account_id", config_path)
        basic = {
            "Authorization": "Basic "
            + base64.b64encode(f"{cfg.account_id}:{key}".encode()).decode("ascii")
        }
        out = []
        for role, edition in (("country", "GeoLite2-Country"), ("asn", "GeoLite2-ASN")):
            url = f"{base}/geoip/databases/{edition}/download?suffix=tar.gz"
            out.append(
                Download(
                    roles=(role,),
                    urls=(url,),
                    shown=url,
                    headers=basic,
                )
            )
        return out
    token = _secret(cfg, "token_file", config_path)
    url = f"{base}/data/ipinfo_lite.mmdb"
    return [Download(roles=("country", "asn"), urls=(f"{url}?token={quote(token)}",), shown=url)]


_ONE_DAY: Final = date(2000, 1, 2) - date(2000, 1, 1)


def _missing(key: str, config_path: Path | None) -> ConfigError:
    where = f"{config_path}: " if config_path else ""
    return ConfigError(
        f"{where}[geoip] {key} is not set: the provider needs it",
        path=config_path,
        section="geoip",
        key=key,
    )


def _secret(cfg: GeoipConfig, key: str, config_path: Path | None) -> str:
    """The first line of the file named by `[geoip] key`; its content is never shown."""
    path: Path | None = getattr(cfg, key)
    if path is None:
        raise _missing(key, config_path)
    where = f"{config_path}: " if config_path else ""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{where}[geoip] {key} = {str(path)!r}: cannot read it: {exc.strerror}",
            path=config_path,
            section="geoip",
            key=key,
        ) from None
    except UnicodeDecodeError:
        value = ""
    if not value or not value.isprintable() or " " in value:
        raise ConfigError(
            f"{where}[geoip] {key} = {str(path)!r}: expected one line holding the key "
            "(its content is not shown)",
            path=config_path,
            section="geoip",
            key=key,
        )
    return value
