"""The daemon's one-line STATUS= (what `systemctl status mlsd` shows), composed from its
running parts. Most important first: systemd cuts STATUS= at 200 characters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Final, Protocol

from mlsd import access
from mlsd.app.behind import bytes_behind
from mlsd.config import Config
from mlsd.ingest.session import Session
from mlsd.store.ship import Lag

CATCHING_UP: Final = 64 * 1024
"""Bytes behind the log from which STATUS= says "catching up"."""
SINK_BEHIND: Final = 2**20
"""Bytes of committed CSV rows a store or the fleet may lag before STATUS= says so."""


def compose(
    cfg: Config,
    session: Session,
    *,
    events_today: int,
    log_problem: access.Access | None,
    reading_live: Callable[[], bool],
    reload_error: str,
    pending_error: str,
    shippers: Mapping[str, Lagging],
    alerts_today: int | None = None,
) -> str:
    """The status line: what is read (or why not), the sentinel's alerts today (when it
    runs), today's count, the newest event, then what waits (the store, the fleet, the
    outbox)."""
    c = session.pipeline.counters
    parts = [reload_error] if reload_error else []
    behind = bytes_behind(session, cfg.paths.mail_log)
    if session.journal is not None:
        parts.insert(0, session.journal.status())
    elif log_problem is not None:
        # First: this is why nothing is recorded (or, through a descriptor opened before a
        # chmod, why a restart would not be).
        why = access.short(log_problem)
        path = cfg.paths.mail_log
        if reading_live():
            parts.insert(0, f"following {path} but could not open it again: {why}")
        else:
            parts.insert(0, f"cannot read {path}: {why}")
    elif behind > CATCHING_UP:
        parts.append(f"catching up, {behind / 2**20:.1f} MiB behind")
    else:
        parts.append(f"following {cfg.paths.mail_log}")
    if alerts_today is not None:
        # Before the counts: a possible compromise is what the admin looks for first.
        parts.append(f"{alerts_today} alert{'' if alerts_today == 1 else 's'} today")
    parts.append(f"{events_today} events today")
    if c.last_event is not None:
        parts.append("last " + c.last_event.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ"))
    parts += sink_parts(shippers)
    if pending_error:
        parts.append("report waiting in outbox: " + pending_error)
    return "; ".join(parts)


class Lagging(Protocol):
    """What STATUS= needs of a shipper (`mlsd.store.ship.Shipper`)."""

    def lag(self) -> Lag: ...


def sink_parts(shippers: Mapping[str, Lagging]) -> list[str]:
    """A part for each sink that is down or far behind; nothing while they keep up."""
    parts = []
    for name, shipper in sorted(shippers.items()):
        lag = shipper.lag()
        if lag.error is not None:
            # Not the error itself (it can be long; the log has it): that rows wait.
            parts.append(f"{name} unavailable, rows wait in the CSV")
        elif lag.bytes is not None and lag.bytes > SINK_BEHIND:
            parts.append(f"{name} {lag.bytes / 2**20:.1f} MiB behind")
    return parts
