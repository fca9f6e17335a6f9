"""The row contract, CSV → StoredRow: every corpus row, both date formats, by column name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from mlsd.ingest.csvlog import RowFormat
from mlsd.ingest.grammar import parse_line
from mlsd.logins import LOGIN_COLUMNS
from mlsd.rows import AuthFailure, decode_row
from mlsd.store.rowmap import asn_text, login_row, parse_asn, parse_time, stored_row
from tests.storekit import enrich, login_cells
from tests.test_parse_corpus import CASES

ROWS = [c for c in CASES if c.expected["expect"] == "row"]
PARIS = ZoneInfo("Europe/Paris")


def _event(case_index: int) -> AuthFailure:
    case = ROWS[case_index]
    ev = parse_line(case.line.encode(), case.ref, case.tz)
    assert isinstance(ev, AuthFailure)
    return ev


def test_every_corpus_row_is_there() -> None:
    """The round trip below covers the corpus's 247 rows (a shrinking corpus would show; the
    logins corpus holds one failure)."""
    assert 247 == len(ROWS)


@pytest.mark.parametrize("i", range(len(ROWS)), ids=lambda i: f"{ROWS[i].source}:{ROWS[i].line_no}")
def test_a_corpus_row_round_trips_through_the_csv(i: int) -> None:
    """Parsed, written as csvlog writes it, read back by `stored_row`: the same event,
    its cells as written, the ASN as a number, the instant kept (to the second in ISO, to
    the minute in MailLogSentinel's format, read in the zone it was written in)."""
    ev = _event(i)
    extra = enrich(ev)
    for fmt, tz in (("iso", UTC), ("iso", PARIS), ("maillogsentinel", PARIS)):
        data = RowFormat(tz=tz, date_format=fmt, cap=256).encode([ev], enrich)
        cells = decode_row(data.decode()[:-1])
        assert cells is not None
        row = stored_row(cells, PARIS)
        want = ev.time.replace(microsecond=0)
        if fmt == "maillogsentinel":
            want = want.replace(second=0)
        assert want == row.time and row.time.tzinfo is not None
        written = RowFormat(tz=tz, date_format=fmt, cap=256).fields(ev, extra)
        assert (
            written[0], *written[2:7], written[8], written[9], written[10]
        ) == (
            row.server, row.ip, row.user, row.hostname, row.reverse_dns_status,
            row.country_code, row.aso, row.service, row.mechanism,
        )  # fmt: skip
        assert asn_text(row.asn) == written[7]
        assert ev.attempts == row.attempts
        assert (ev.ip, ev.service) == (row.ip, row.service)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T05:38:00+01:00", datetime(2026, 11, 25, 4, 38, tzinfo=UTC)),
        ("2026-11-25T05:38:00+05:45", datetime(2026, 11, 24, 23, 53, tzinfo=UTC)),
        ("25/11/2026 05:38", datetime(2026, 11, 25, 4, 38, tzinfo=UTC)),  # Paris, winter
        ("2026-11-25T05:38:00", datetime(2026, 11, 25, 4, 38, tzinfo=UTC)),  # no offset: tz
    ],
)
def test_parse_time_names_the_instant(text: str, expected: datetime) -> None:
    assert expected == parse_time(text, PARIS)


@pytest.mark.parametrize("text", ["", "25/11/2026", "yesterday", "2026-13-01T00:00:00+00:00"])
def test_a_date_mlsd_never_writes_is_an_error(text: str) -> None:
    """The shipper passes such a line over (counted), it never stores a made-up time."""
    with pytest.raises(ValueError):
        parse_time(text, PARIS)


@pytest.mark.parametrize(
    ("cell", "asn"),
    [("AS29518", 29518), ("29518", 29518), ("N/A", None), ("AS", None), ("AS-1", None),
     ("AS\u0661\u0662", None), ("AS4294967295", 4294967295), ("AS4294967296", None),
     ("99999999999999999999", None)],
)  # fmt: skip
def test_asn_cell(cell: str, asn: int | None) -> None:
    assert asn == parse_asn(cell)


def test_offset_survives_as_written() -> None:
    """The stored time keeps the offset the row was written with (status and reports may
    show local times as the CSV did)."""
    cells = ["mx", "2026-11-25T05:38:00+05:45", *["x"] * 10]
    cells[7], cells[11] = "N/A", "2"
    row = stored_row(cells)
    assert timedelta(hours=5, minutes=45) == row.time.utcoffset()
    assert timezone(timedelta(hours=5, minutes=45)) == row.time.tzinfo
    assert (None, 2) == (row.asn, row.attempts)


@pytest.mark.parametrize(
    ("cell", "want"),
    [("3", 3), ("2147483647", 2147483647), ("2147483648", 0), ("99999999999999999999", 0),
     ("x", 0), ("", 0)],
)  # fmt: skip
def test_a_logins_recipients_cell_no_store_holds_is_zero(cell: str, want: int) -> None:
    """As for `attempts` and `asn`: an edited number must not make a store refuse the batch."""
    cells = login_cells(1)[0]
    cells[LOGIN_COLUMNS.index("recipients")] = cell
    assert want == login_row(cells).recipients
