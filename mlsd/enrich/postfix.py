"""Enrichment without a lookup: the reverse DNS Postfix already resolved, or none at all.

What `[dns] reverse = postfix` and `off` write, and what `lookup` falls back to. No I/O:
`mlsd parse` and the benchmarks use it without a resolver or a GeoIP database.
"""

from __future__ import annotations

from typing import Final

from mlsd.rows import AuthFailure, Enrichment, ReverseStatus


def postfix_reverse(event: AuthFailure) -> Enrichment:
    """Reverse DNS as Postfix already resolved it (`host[IP]`; `unknown` = no name).

    OK: Postfix logged a name. NONE: Postfix found none (`unknown`). N/A: the line carries
    no hostname at all (Dovecot's login lines).
    """
    if not event.hostname:
        return _NO_HOSTNAME
    if event.hostname == "unknown":
        return _UNKNOWN
    return Enrichment(event.hostname, ReverseStatus.OK)


def no_reverse(event: AuthFailure) -> Enrichment:
    """`[dns] reverse = off`: no hostname in the rows."""
    del event
    return _OFF


_NO_HOSTNAME: Final = Enrichment(hostname="", reverse_dns_status=ReverseStatus.NOT_AVAILABLE)
_UNKNOWN: Final = Enrichment(hostname="unknown", reverse_dns_status=ReverseStatus.NONE)
_OFF: Final = Enrichment(hostname="", reverse_dns_status=ReverseStatus.OFF)
