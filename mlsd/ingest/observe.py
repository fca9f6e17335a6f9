"""A committed batch's failures and logins as the sentinel sees them (mlsd.alerts.Observation).

Each with its enrichment (country, network, hostname), merged in log time order: at equal
times the failures come first (a login is judged after the failures logged with it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Final

from mlsd.alerts import Observation
from mlsd.logins import Kind, Login
from mlsd.rows import AuthFailure, Enrichment, ReverseStatus

Enrich = Callable[[AuthFailure], Enrichment]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_LOCAL: Final = Enrichment(hostname="", reverse_dns_status=ReverseStatus.NOT_AVAILABLE)


def enrich_logins(logins: Sequence[Login], enrich: Enrich) -> list[tuple[Login, Enrichment]]:
    """Each login with the enrichment a failure from its address gets (every enrichment
    strategy reads only the IP and the logged hostname, so the failures' memo serves);
    a login without an IP (a local one) gets none."""
    return [
        (x, enrich(AuthFailure(_EPOCH, "", "", "", x.hostname, x.ip, None, "")) if x.ip else _LOCAL)
        for x in logins
    ]


def observations(
    events: Sequence[AuthFailure],
    extras: Sequence[Enrichment],
    logins: Sequence[tuple[Login, Enrichment]],
) -> list[Observation]:
    """The batch's failures (with `extras`, their enrichments, in the same order) and
    (enriched) logins, merged in log time order."""
    keyed: list[tuple[datetime, int, int, Observation]] = []
    for i, (ev, extra) in enumerate(zip(events, extras, strict=True)):
        keyed.append(
            (
                ev.time,
                0,
                i,
                Observation(
                    ev.time,
                    Kind.FAILURE,
                    ev.user or "",
                    ev.ip,
                    ev.server,
                    ev.service,
                    extra.country_code,
                    extra.asn,
                    extra.aso,
                    extra.hostname,
                    attempts=ev.attempts,
                ),
            )
        )
    for i, (x, extra) in enumerate(logins):
        keyed.append(
            (
                x.time,
                1,
                i,
                Observation(
                    x.time,
                    x.kind,
                    x.user,
                    x.ip,
                    x.server,
                    x.service,
                    extra.country_code,
                    extra.asn,
                    extra.aso,
                    extra.hostname,
                    recipients=x.recipients,
                ),
            )
        )
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]
