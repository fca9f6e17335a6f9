"""A decoded CSV row → the typed `StoredRow` a sink stores, cell by cell by column name."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Final

from mlsd.logins import LOGIN_COLUMNS
from mlsd.rows import ATTEMPTS_MAX, NOT_AVAILABLE, Column, attempts_of
from mlsd.store.contract import LoginRow, StoredRow

_MLS_LEN: Final = len("dd/mm/YYYY HH:MM")


def parse_time(text: str, tz: tzinfo = UTC) -> datetime:
    """The `date` cell as an aware datetime: ISO 8601 with its offset, or
    MailLogSentinel's `dd/mm/YYYY HH:MM` in `tz` (the `[csv] timezone` it was written in).

    Raises ValueError for anything else (a hand-edited row).
    """
    if len(text) == _MLS_LEN and text[2] == "/":
        return datetime.strptime(text, "%d/%m/%Y %H:%M").replace(tzinfo=tz)
    when = datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=tz)


ASN_MAX: Final = 2**32 - 1
"""AS numbers are 32 bits (RFC 6793)."""


def parse_asn(text: str) -> int | None:
    """`AS29518` (or a bare `29518`) → 29518; `N/A`, or anything else, → None. A number
    no AS has (an edited row) is None too: a store would refuse it, and with it the batch,
    at every try."""
    if text == NOT_AVAILABLE:
        return None
    return _number(text[2:] if text[:2] in ("AS", "as") else text, ASN_MAX)


def _number(digits: str, most: int) -> int | None:
    """ASCII digits as a number of at most `most` (a store's column), else None."""
    if not digits.isascii() or not digits.isdigit():
        return None
    n = int(digits)
    return n if n <= most else None


def asn_text(asn: int | None) -> str:
    """The `asn` cell again: `AS29518`, or `N/A`."""
    return NOT_AVAILABLE if asn is None else f"AS{asn}"


# The cells' places, from the row contract by name, resolved once: an IntEnum lookup per
# cell would cost more than the rest of the row (one row per CSV line, on a catch-up).
_SERVER: Final = int(Column.SERVER)
_DATE: Final = int(Column.DATE)
_IP: Final = int(Column.IP)
_USER: Final = int(Column.USER)
_HOSTNAME: Final = int(Column.HOSTNAME)
_STATUS: Final = int(Column.REVERSE_DNS_STATUS)
_COUNTRY: Final = int(Column.COUNTRY_CODE)
_ASN: Final = int(Column.ASN)
_ASO: Final = int(Column.ASO)
_SERVICE: Final = int(Column.SERVICE)
_MECHANISM: Final = int(Column.MECHANISM)
_ATTEMPTS: Final = int(Column.ATTEMPTS)


def stored_row(cells: Sequence[str], tz: tzinfo = UTC) -> StoredRow:
    """One CSV row (cells as `mlsd.rows.decode_row` returns them) as a `StoredRow`.

    `tz` is the zone a MailLogSentinel-format date was written in; an ISO date carries its
    own offset. Raises ValueError when the date is not one mlsd writes.
    """
    attempts = cells[_ATTEMPTS]
    asn = cells[_ASN]
    return StoredRow(
        parse_time(cells[_DATE], tz),
        cells[_SERVER],
        cells[_IP],
        cells[_USER],
        cells[_HOSTNAME],
        cells[_STATUS],
        cells[_COUNTRY],
        None if asn == NOT_AVAILABLE else parse_asn(asn),
        cells[_ASO],
        cells[_SERVICE],
        cells[_MECHANISM],
        1 if attempts == "1" else attempts_of(attempts),
    )


_L: Final = {name: LOGIN_COLUMNS.index(name) for name in LOGIN_COLUMNS}
"""The logins CSV's cells' places, by name (`mlsd.logins.LOGIN_COLUMNS`)."""


def login_row(cells: Sequence[str], tz: tzinfo = UTC) -> LoginRow:
    """One logins CSV row (its cells, quotes undone) as a `LoginRow`.

    Raises ValueError when the date is not one mlsd writes. A `recipients` cell that is not
    a number a store can hold (an edited row) is 0.
    """
    recipients = cells[_L["recipients"]]
    return LoginRow(
        parse_time(cells[_L["date"]], tz),
        cells[_L["server"]],
        cells[_L["ip"]],
        cells[_L["user"]],
        cells[_L["hostname"]],
        cells[_L["country_code"]],
        parse_asn(cells[_L["asn"]]),
        cells[_L["aso"]],
        cells[_L["service"]],
        cells[_L["mechanism"]],
        cells[_L["event"]],
        _number(recipients, ATTEMPTS_MAX) or 0,
    )
