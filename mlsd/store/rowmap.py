"""A decoded CSV row → the typed `StoredRow` a sink stores, cell by cell by column name."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from typing import Final

from mlsd.rows import NOT_AVAILABLE, Column, attempts_of
from mlsd.store.contract import StoredRow

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


def parse_asn(text: str) -> int | None:
    """`AS29518` (or a bare `29518`) → 29518; `N/A`, or anything else, → None."""
    if text == NOT_AVAILABLE:
        return None
    digits = text[2:] if text[:2] in ("AS", "as") else text
    if not digits.isascii() or not digits.isdigit():
        return None
    return int(digits)


def asn_text(asn: int | None) -> str:
    """The `asn` cell again: `AS29518`, or `N/A`."""
    return NOT_AVAILABLE if asn is None else f"AS{asn}"


def stored_row(cells: Sequence[str], tz: tzinfo = UTC) -> StoredRow:
    """One CSV row (cells as `mlsd.rows.decode_row` returns them) as a `StoredRow`.

    `tz` is the zone a MailLogSentinel-format date was written in; an ISO date carries its
    own offset. Raises ValueError when the date is not one mlsd writes.
    """
    return StoredRow(
        time=parse_time(cells[Column.DATE], tz),
        server=cells[Column.SERVER],
        ip=cells[Column.IP],
        user=cells[Column.USER],
        hostname=cells[Column.HOSTNAME],
        reverse_dns_status=cells[Column.REVERSE_DNS_STATUS],
        country_code=cells[Column.COUNTRY_CODE],
        asn=parse_asn(cells[Column.ASN]),
        aso=cells[Column.ASO],
        service=cells[Column.SERVICE],
        mechanism=cells[Column.MECHANISM],
        attempts=attempts_of(cells[Column.ATTEMPTS]),
    )
