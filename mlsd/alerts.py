"""The sentinel's contract: what it is fed (Observation) and what it raises (Alert).

Ingest builds Observations from a batch's committed failures and successful logins (with
their enrichment); the detectors (mlsd.sentinel) turn them into Alerts; the surfaces (alert
mail, `mlsd alerts`, the daily report, STATUS=, metrics) read Alerts. Every text field
that came from a log line (user, hostname, server, service, organisation) is
attacker-chosen and is kept raw here: each surface cleans it with mlsd.untrusted.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from mlsd.logins import Kind
from mlsd.rows import NOT_AVAILABLE


class Observation(NamedTuple):
    """One committed event with its enrichment: what a detector sees."""

    time: datetime
    kind: Kind
    user: str
    """Empty when a failure line names no user."""
    ip: str
    server: str = ""
    service: str = ""
    country: str = NOT_AVAILABLE
    asn: str = NOT_AVAILABLE
    aso: str = NOT_AVAILABLE
    hostname: str = ""
    attempts: int = 1
    """FAILURE: attempts the line stands for."""
    recipients: int = 0
    """SUBMIT: recipients of the message."""


class Rule(enum.StrEnum):
    """The documented rules (README, "Sentinel"); their thresholds are in `[sentinel]`."""

    SUCCESS_AFTER_FAILURES = "success_after_failures"
    NEW_COUNTRY = "new_country"
    NEW_NETWORK = "new_network"
    MANY_SOURCES = "many_sources"
    SEND_BURST = "send_burst"


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """A possible compromise: who, which rule, the line that triggered it, the evidence."""

    rule: Rule
    user: str
    time: datetime
    """The triggering event's log time."""
    server: str
    ip: str
    country: str = NOT_AVAILABLE
    asn: str = NOT_AVAILABLE
    aso: str = NOT_AVAILABLE
    headline: str
    """Short, for the subject: `new country SE`, `12 failures then a login`."""
    evidence: tuple[tuple[str, str], ...] = ()
    """Ordered (label, value) pairs: failures (count, IPs, first/last), the user's usual
    countries/networks/IPs and when last seen, the new ones. Values may hold attacker text."""
    thresholds: tuple[tuple[str, str], ...] = ()
    """The `[sentinel]` keys of the rule that fired, with their values."""
    id: str = field(default="")
    """Deterministic (see `alert_id`): the same trigger read twice (a batch replayed after
    a crash) is the same alert, which is how alerts are recorded exactly once."""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", alert_id(self.rule, self.user, self.time, self.ip))

    def to_json(self) -> dict[str, Any]:
        """The record's JSON form (`mlsd alerts --json`, the alerts journal)."""
        return {
            "id": self.id,
            "rule": self.rule.value,
            "user": self.user,
            "time": self.time.isoformat(),
            "server": self.server,
            "ip": self.ip,
            "country": self.country,
            "asn": self.asn,
            "aso": self.aso,
            "headline": self.headline,
            "evidence": [list(p) for p in self.evidence],
            "thresholds": [list(p) for p in self.thresholds],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        """Inverse of `to_json`; raises ValueError/KeyError/TypeError on a damaged record."""

        def pairs(v: Any) -> tuple[tuple[str, str], ...]:
            return tuple((str(a), str(b)) for a, b in v)

        return cls(
            id=str(data["id"]),
            rule=Rule(data["rule"]),
            user=str(data["user"]),
            time=datetime.fromisoformat(str(data["time"])),
            server=str(data["server"]),
            ip=str(data["ip"]),
            country=str(data["country"]),
            asn=str(data["asn"]),
            aso=str(data["aso"]),
            headline=str(data["headline"]),
            evidence=pairs(data["evidence"]),
            thresholds=pairs(data["thresholds"]),
        )


def alert_id(rule: Rule, user: str, time: datetime, ip: str) -> str:
    """16 hex digits naming (rule, user, trigger time, ip)."""
    key = json.dumps([rule.value, user, time.isoformat(), ip]).encode()
    return hashlib.sha256(key).hexdigest()[:16]


class Detector(Protocol):
    """The rules over a stream of committed observations, in log order."""

    def observe(self, batch: Sequence[Observation]) -> list[Alert]:
        """Feed one committed batch; return the alerts it raised (already deduplicated
        and rate-limited by `[sentinel] quiet_minutes`)."""
        ...


class AlertSink(Protocol):
    """Where raised alerts go (the alerts journal, then mail, log, counters)."""

    def raise_alerts(self, alerts: Sequence[Alert]) -> None:
        """Record `alerts` durably (once each: an id already recorded is ignored)."""
        ...
