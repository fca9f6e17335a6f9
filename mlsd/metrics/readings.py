"""What a scrape reads: a snapshot of the daemon's counters, plain data, taken by app."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True, kw_only=True)
class Readings:
    """The daemon's counters at one instant. Totals count since the daemon started."""

    lines_read: int = 0
    """Log lines (or journal entries) read and committed."""
    events_by_service: Mapping[str, int] = field(default_factory=dict)
    """Rows written to the CSV, by service (smtp, imap, …)."""
    not_recorded: Mapping[str, int] = field(default_factory=dict)
    """Lines that looked like a login attempt but made no row, by reason."""
    gaps: int = 0
    """Stretches of the log mlsd knows it could not read."""
    last_event: float | None = None
    """Log time of the newest row written (epoch seconds); None: none since start."""
    bytes_behind: int | None = None
    """Bytes of the log not read yet; None with the journal source."""
    journal_cursor_age: float | None = None
    """Seconds since the newest committed journal entry was logged; None with the file
    source, or before the first entry."""
    outbox_messages: int | None = None
    """Messages waiting in the outbox; None when the outbox cannot be read."""
    outbox_oldest_age: float | None = None
    """Seconds the oldest of them has waited (0 when the outbox is empty)."""
    reports_delivered: int = 0
    """Reports delivered since start."""
    last_report_delivered: float | None = None
    """When the last of them was delivered (epoch seconds); None: none since start."""
    alerts_by_rule: Mapping[str, int] | None = None
    """Alerts raised since start, by rule (mlsd.alerts.Rule values); None: the sentinel
    does not run (no series)."""
    sinks: Mapping[str, SinkReading] = field(default_factory=dict)
    """The event store's and the fleet's shippers, by name ("store", "fleet")."""


@dataclass(frozen=True, slots=True)
class SinkReading:
    """How far one sink (the SQLite store, the fleet's PostgreSQL) is behind the CSV."""

    up: bool
    """Rows are being stored (False: an outage, the rows wait in the CSV)."""
    bytes_behind: int | None
    """Committed CSV bytes not stored yet; None while unknown."""
    rows_behind: int | None
    """Committed rows not stored yet; None while unknown."""


Read = Callable[[], Readings]
"""Takes the snapshot; called once per scrape, on the event loop."""
