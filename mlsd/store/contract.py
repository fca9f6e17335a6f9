"""What a sink is: a database that stores the CSV's committed rows with their position.

A sink keeps, per node, the CSV position up to which its rows are stored, and stores a
batch's rows and its end position in one transaction. A batch names the position it starts
at; a sink whose stored position differs refuses it (`StoreConflict`), so two writers, or a
CSV the sink does not know, can never double or skip a row. Exactly once by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


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


@runtime_checkable
class InThread(Protocol):
    """A sink whose writes are blocking calls in a worker thread of its own (SQLite): the
    shipper then reads and stores several batches in one call there. Each awaited call
    costs an event-loop turn, and while the follower catches up it gets one only between
    the follower's batches: two turns a batch kept a store seconds behind the CSV."""

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the sink's worker thread."""
        ...

    def append_blocking(self, node: str, batch: Batch) -> None:
        """`append`, called in that thread."""
        ...
