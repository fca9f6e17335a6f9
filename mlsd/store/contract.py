"""What a sink is: a database that stores the CSV's committed rows with their position.

A sink keeps, per node, the CSV position up to which its rows are stored, and stores a
batch's rows and its end position in one transaction. A batch names the position it starts
at; a sink whose stored position differs refuses it (`StoreConflict`), so two writers, or a
CSV the sink does not know, can never double or skip a row. Exactly once by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Position:
    """A place in one CSV file: its identity and a byte offset at a row boundary."""

    csv_dev: int
    csv_ino: int
    csv_offset: int
    """Bytes of that CSV file whose rows are stored (a row boundary)."""


class StoredRow(NamedTuple):
    """One CSV row, typed (built by `mlsd.store.rowmap.stored_row`, by column name)."""

    time: datetime
    """Aware: the instant the row's `date` names, in the offset it was written with."""
    server: str
    ip: str
    user: str
    hostname: str
    reverse_dns_status: str
    country_code: str
    asn: int | None
    """The number of `AS29518`; None for `N/A`."""
    aso: str
    service: str
    mechanism: str
    attempts: int


class LoginRow(NamedTuple):
    """One logins CSV row, typed (built by `mlsd.store.rowmap.login_row`, by column name):
    `mlsd.logins.LOGIN_COLUMNS` in their order, `date` as `time` first."""

    time: datetime
    """Aware: the instant the row's `date` names, in the offset it was written with."""
    server: str
    ip: str
    user: str
    hostname: str
    country_code: str
    asn: int | None
    aso: str
    service: str
    mechanism: str
    event: str
    """`login` or `submit` (`mlsd.logins.Kind`)."""
    recipients: int


Row = StoredRow | LoginRow
"""A row of either journal (the failures CSV, the logins CSV)."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows read from the CSV between two positions, to be stored in one transaction."""

    rows: Sequence[Row]
    start: Position
    """The sink's stored position must equal this, else `StoreConflict`."""
    end: Position


class StoreConflict(Exception):
    """The sink's stored position is not the batch's start: another writer, or a CSV the
    store does not know (a `mlsd reset` moved it aside)."""


class Sink(Protocol):
    """A database the shipper appends batches to."""

    name: str
    """"store" / "fleet", for logs and status."""

    async def position(self, node: str) -> Position | None:
        """The position up to which `node`'s rows are stored; None before the first batch."""
        ...

    async def append(self, node: str, batch: Batch) -> None:
        """Store the batch's rows and its end position in ONE transaction.

        Raises `StoreConflict` (and stores nothing) when a position is stored for `node`
        and it is not `batch.start`. With none stored, any start is taken (the shipper
        starts at the CSV's first row).
        """
        ...

    async def close(self) -> None:
        """Release the connection; idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class Span:
    """Committed rows of one CSV for a sink that reads them itself (`ReadsCsv`): from
    `start` (the sink's stored position) toward `until`, `most` rows a transaction, at most
    `batches` transactions in one call."""

    path: Path
    start: Position
    until: Position
    """Never read past it: the checkpoint's committed end (its file is `path`)."""
    most: int
    batches: int
    tz: tzinfo | None
    """The zone a MailLogSentinel-format date was written in (`mlsd.store.rowmap`); None:
    the system's, as `mlsd.config.schema.resolve_tz("")` reads it (a zone read from
    /etc/localtime cannot be sent to another process, its name can)."""


@dataclass(frozen=True, slots=True)
class Shipped:
    """What one `ReadsCsv.ship_span` call stored, batch after batch, each in its own
    transaction: up to `end`, and the error that stopped it (None: it did not stop)."""

    end: Position
    rows: int
    skipped: int
    """Lines passed over: not rows mlsd writes (a hand-edited CSV)."""
    last_time: datetime | None
    """The time of the last row stored (None when none was)."""
    error: Exception | None = None


@runtime_checkable
class ReadsCsv(Protocol):
    """A sink that reads the committed rows itself, next to its database: the SQLite
    store, in a process of its own (mlsd.store.writer). The shipper then hands it a `Span`
    instead of rows: nothing of the rows is decoded, or held, by the daemon's process."""

    async def ship_span(self, node: str, span: Span) -> Shipped:
        """Read and store up to `span.batches` batches of `span`, each with its end
        position in one transaction, as `append` does."""
        ...
