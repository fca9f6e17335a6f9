"""The two journals the store follows, each into its own table with its own position.

A `Journal` says what differs between them and nothing else: the CSV's header, how a line
becomes cells and cells a typed row, and the names of its table and position table. The
shipper (`mlsd.store.ship`), the SQLite store and the fleet's sink are written once, for
any journal:

- `EVENTS`: the failures CSV (`mlsd.rows`) into `mlsd_events` / `mlsd_positions`;
- `LOGINS`: the logins CSV (`mlsd.logins`) into `mlsd_logins` / `mlsd_login_positions`.

Each journal ships on its own, exactly once: a batch's rows and that journal's position go
in one transaction, whatever the other journal is doing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from typing import Final

from mlsd.logins import LOGIN_COLUMNS, LOGIN_HEADER
from mlsd.rows import HEADER, Column, decode_row
from mlsd.store.contract import LoginRow, Row, StoredRow
from mlsd.store.rowmap import login_row, stored_row


@dataclass(frozen=True, slots=True)
class Journal:
    """One CSV journal and the tables it is stored in."""

    name: str
    """"events" / "logins": in logs and in the shippers' names."""
    header: bytes
    """The CSV's first line; the first row starts right after it."""
    date_cell: int
    """The place of the `date` cell (for `mlsd store check`'s counts per day)."""
    cells: Callable[[str], list[str] | None]
    """A line (no line end) → its cells, or None when it is not a row (too few cells)."""
    row: Callable[[Sequence[str], tzinfo], Row]
    """Cells → the typed row (ValueError for a date mlsd does not write)."""
    row_type: type[StoredRow] | type[LoginRow]
    table: str
    positions: str
    fields: tuple[str, ...]
    """The row's fields after `time`, in order: also the columns' names in both databases."""


def _login_cells(line: str) -> list[str] | None:
    return decode_row(line, len(LOGIN_COLUMNS))


LOGINS_HEADER: Final = LOGIN_HEADER
"""The same line under the name the store's tests know (mlsd.logins.LOGIN_HEADER)."""

EVENTS: Final = Journal(
    name="events",
    header=HEADER,
    date_cell=int(Column.DATE),
    cells=decode_row,
    row=stored_row,
    row_type=StoredRow,
    table="mlsd_events",
    positions="mlsd_positions",
    fields=StoredRow._fields[1:],
)
LOGINS: Final = Journal(
    name="logins",
    header=LOGIN_HEADER,
    date_cell=LOGIN_COLUMNS.index("date"),
    cells=_login_cells,
    row=login_row,
    row_type=LoginRow,
    table="mlsd_logins",
    positions="mlsd_login_positions",
    fields=LoginRow._fields[1:],
)
