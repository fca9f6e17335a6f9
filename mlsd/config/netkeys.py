"""Value parsers for the keys that name a place on the network: resolvers, the metrics
endpoint, download and PostgreSQL URLs, the fleet node's name. Part of `mlsd.config.keys`
(same contract: return the value or raise ValueError with the "expected …" text)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import parse_qs, urlsplit

from mlsd.config.schema import Listen

_SERVER = re.compile(
    r"\[(?P<v6>[^\]]+)\](?::(?P<v6port>\d{1,5}))?|(?P<v4>[\d.]+)(?::(?P<port>\d{1,5}))?"
)


def servers(raw: str) -> tuple[str, ...]:
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


def listen(raw: str) -> Listen | None:
    """`127.0.0.1:9717`, `[::1]:9717`; empty: off. An IP literal only: the endpoint binds to
    exactly what is written, never to what a name resolves to."""
    if not raw:
        return None
    expected = (
        "an IP address and a port such as 127.0.0.1:9717 ([::1]:9717 for IPv6), or empty to "
        "serve no metrics"
    )
    m = _SERVER.fullmatch(raw)
    if m is None:
        raise ValueError(expected)
    host, port = (m["v6"], m["v6port"]) if m["v6"] else (m["v4"], m["port"])
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(expected) from None
    if port is None or not 0 < int(port) < 65536:
        raise ValueError(expected)
    return Listen(host, int(port))


def account_id(raw: str) -> str:
    if raw and not (raw.isdecimal() and raw.isascii()):
        raise ValueError("the MaxMind account id, a number")
    return raw


def base_url(raw: str) -> str:
    """An http(s) URL without a query: urllib would also open file: and ftp: ones."""
    if raw and not re.fullmatch(r"https?://[^\s?#]+", raw):
        raise ValueError("an http:// or https:// URL without ? or #, or empty")
    return raw.rstrip("/")


def fleet_url(raw: str) -> str:
    """A PostgreSQL URL without a password: the url is shown by `check-config` and in
    logs, the password belongs in [fleet] password_file."""
    if not raw:
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in ("postgresql", "postgres") or not parts.path.strip("/"):
        raise ValueError("a URL such as postgresql://mx1@db.example.org/mlsd, or empty")
    if parts.password is not None or "password" in parse_qs(parts.query):
        raise ValueError(
            "a URL without a password (check-config and the logs show the url): "
            "put the password in [fleet] password_file"
        )
    return raw


def node(raw: str) -> str:
    # The node is the role's name too (row-level security: node = current_user).
    if len(raw.encode()) > 63:
        raise ValueError("a name of at most 63 bytes (a PostgreSQL role name), or empty")
    return raw


def networks(raw: str) -> tuple[str, ...]:
    """CIDR networks (or single addresses), comma- or space-separated, in canonical form."""
    out: list[str] = []
    for part in (p for p in re.split(r"[,\s]+", raw) if p):
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(
                "networks in CIDR form (192.0.2.0/24, 2001:db8::/32) or addresses, "
                "separated by commas"
            ) from None
    return tuple(out)
