"""A mail log with its people taken out: IPs, usernames, hostnames and domains replaced by
keyed pseudonyms, everything mlsd parses kept (issue 21, MailLogSentinel's log_anonymizer).

Each value gets HMAC-SHA256(key, kind, value) as its pseudonym, so the same attacker is the
same pseudonym in every file anonymised with the same key, and nobody without the key can
go back. The shapes are kept where the parser reads them: an IPv4 becomes an IPv4 in
10.0.0.0/8 and an IPv6 one in 2001:db8::/32 (the documentation prefix), a username stays a
username (its local part and its domain each replaced, so one domain stays one domain),
a hostname stays a hostname (Postfix's `unknown` is kept: it is a marker, not a name).
The line's stamp, its program and pid, and every word around the values are left alone.

One regex pass per line over an alternation, so nothing is rewritten twice; the line is
read as Latin-1 (any bytes, one character each) and written back the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable
from typing import Final

_HEADER: Final = re.compile(
    r"(?P<stamp>[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?"
    r"|@[0-9a-f]{24})"
    r" (?:(?P<host>[^\s:\[]+) )?(?P<prog>[^\s\[:]+)(?:\[\d+\])?: "
)
_DOVECOT_FUNCS: Final = (
    "passwd-file|passwd|shadow|pam|sql|ldap|checkpassword|static|bsdauth|oauth2|lua"
    "|imap|pop3|lmtp|submission|managesieve|doveadm|lda"
)
_DOMAIN: Final = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*[A-Za-z0-9]"
_IP_CHARS: Final = r"[0-9A-Fa-f:.]"
# In priority order; each alternative's groups are named, and the first to match wins.
_MESSAGE: Final = re.compile(
    r"(?P<sasl>, sasl_username=)(?P<sasl_user>.*?)(?P<sasl_end>\]?)$"
    r"|(?P<duser>\buser=<)(?P<duser_v>[^>]*)(?=>(?:, |\]?$|:|\)))"
    r"|(?P<given>given password: )(?P<given_v>[^)]*)"
    rf"|(?P<func>\b(?:{_DOVECOT_FUNCS})\()(?P<func_user>[^,()<>\s]+)(?=[,)])"
    r"|(?P<hostip>[A-Za-z0-9._-]+)(?=\[)"
    rf"|(?P<email>[^\s<>,;()\[\]@\"'=]+@{_DOMAIN})"
    rf"|(?<![\w:.-])(?P<ip>(?=[0-9A-Fa-f]*[:.]){_IP_CHARS}{{2,}})(?![\w-])"
    rf"|(?<![\w.-])(?P<domain>{_DOMAIN})(?![\w-])",
    re.DOTALL,
)
_IPV4_IN: Final = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
_KEEP_HOSTS: Final = frozenset({"unknown"})


class Anonymizer:
    """Keyed, consistent pseudonyms for the values of a mail log; see the module docstring."""

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._seen: dict[tuple[str, str], str] = {}
        self._taken: dict[tuple[str, str], str] = {}

    def line(self, raw: bytes) -> bytes:
        """One line (with or without its newline) anonymised."""
        text = raw.decode("latin-1")
        m = _HEADER.match(text)
        if m is None:
            return self._message(text).encode("latin-1")
        head = text[: m.end()]
        host = m["host"]
        if host is not None:
            start, end = m.span("host")
            head = head[:start] + self.host(host) + head[end:]
        return (head + self._message(text[m.end() :])).encode("latin-1")

    # ---- the kinds of value

    def ip(self, value: str) -> str:
        """An IP of the same family; a value that is not an IP is returned unchanged."""
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return value
        if addr.version == 4:
            return self._pseudo(
                "ip4",
                addr.compressed,
                lambda d: str(ipaddress.IPv4Address((10 << 24) | int.from_bytes(d[:3], "big"))),
            )
        return self._pseudo(
            "ip6",
            addr.compressed,
            lambda d: str(
                ipaddress.IPv6Address((0x20010DB8 << 96) | int.from_bytes(d[:12], "big"))
            ),
        )

    def user(self, value: str) -> str:
        """`local@domain` → `uXXXX@dXXXX.example`, each part on its own; empty stays empty."""
        if not value or value == "(unavailable)":
            return value
        local, at, domain = value.rpartition("@") if "@" in value else (value, "", "")
        out = self._pseudo("user", local, lambda d: "u" + d.hex()[:10])
        return out + at + self.domain(domain) if at else out

    def host(self, value: str) -> str:
        """A hostname of the same shape (no space, colon or bracket); `unknown` is kept."""
        if value in _KEEP_HOSTS:
            return value
        return self._pseudo("host", value.lower(), lambda d: "h" + d.hex()[:10] + ".example")

    def domain(self, value: str) -> str:
        """A mail domain (the part after `@`)."""
        if not value:
            return value
        return self._pseudo("domain", value.lower(), lambda d: "d" + d.hex()[:10] + ".example")

    # ---- internals

    def _message(self, text: str) -> str:
        return _MESSAGE.sub(self._replace, text)

    def _replace(self, m: re.Match[str]) -> str:
        if m["sasl"] is not None:
            return m["sasl"] + self.user(m["sasl_user"]) + m["sasl_end"]
        if m["duser"] is not None:
            return m["duser"] + self.user(m["duser_v"])
        if m["given"] is not None:
            return m["given"] + "***"
        if m["func"] is not None:
            return m["func"] + self.user(m["func_user"])
        if m["hostip"] is not None:
            return self.host(m["hostip"])
        if m["email"] is not None:
            return self.user(m["email"])
        if m["ip"] is not None:
            value = m["ip"]
            if ":" not in value and "." not in value:
                return value
            out = self.ip(value)
            if out != value:
                return out
            # `192.0.2.1:25` and the like: the addresses inside, the rest kept.
            return _IPV4_IN.sub(lambda n: self.ip(n[0]), value)
        return self.host(m["domain"])

    def _pseudo(self, kind: str, value: str, shape: Callable[[bytes], str]) -> str:
        known = self._seen.get((kind, value))
        if known is not None:
            return known
        for n in range(1000):
            msg = f"{kind}\0{value}\0{n}".encode("utf-8", "surrogateescape")
            out = shape(hmac.new(self._key, msg, hashlib.sha256).digest())
            # Two values on one pseudonym would merge two attackers: the next one, then.
            if self._taken.setdefault((kind, out), value) == value:
                break
        self._seen[(kind, value)] = out
        return out
