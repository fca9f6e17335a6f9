"""The CSV: MailLogSentinel's columns first, attacker-chosen fields made harmless, mode 0640."""

from __future__ import annotations

import csv
import io
import os
import stat
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd.enrich.postfix import postfix_reverse
from mlsd.errors import StateError
from mlsd.ingest.csvlog import CsvJournal, RowFormat, clean_field, format_date
from mlsd.rows import COLUMNS, HEADER, AuthFailure, encode_rows

MLS_HEADER = "server;date;ip;user;hostname;reverse_dns_status;country_code;asn;aso"


def event(**kw: object) -> AuthFailure:
    base: dict[str, object] = {
        "time": datetime(2026, 11, 25, 4, 38, tzinfo=UTC),
        "server": "mail",
        "service": "submission",
        "mechanism": "LOGIN",
        "hostname": "unknown",
        "ip": "192.0.2.1",
        "user": "admin",
        "reason": "(reason unavailable)",
    }
    base.update(kw)
    return AuthFailure(**base)  # type: ignore[arg-type]


def row(ev: AuthFailure, date_format: str = "iso", tz: object = UTC) -> list[str]:
    fmt = RowFormat(tz=tz, date_format=date_format, cap=256)  # type: ignore[arg-type]
    return fmt.fields(ev, postfix_reverse(ev))


def test_header_starts_with_maillogsentinel_columns() -> None:
    """The first nine columns are MailLogSentinel's, in its order, `;`-separated."""
    assert HEADER.decode().startswith(MLS_HEADER + ";")
    assert ("service", "mechanism", "attempts") == COLUMNS[9:]


def test_row_layout_and_iso_date() -> None:
    """A row carries the event in column order with an ISO 8601 date and offset."""
    ev = event()
    assert [
        "mail", "2026-11-25T05:38:00+01:00", "192.0.2.1", "admin", "unknown", "NONE",
        "N/A", "N/A", "N/A", "submission", "LOGIN", "1",
    ] == row(ev, tz=ZoneInfo("Europe/Paris"))  # fmt: skip


def test_maillogsentinel_date_format() -> None:
    """date_format = maillogsentinel writes dd/mm/YYYY HH:MM in the configured zone."""
    assert "25/11/2026 05:38" == row(event(), "maillogsentinel", ZoneInfo("Europe/Paris"))[1]


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_formula_starts_are_neutralised(start: str) -> None:
    """No cell starts a formula: `= + - @` get a leading `'`, tab and CR become escapes."""
    cleaned = clean_field(start + "cmd|' /C calc'!A0", 256)
    expected = {"\t": "\\x09", "\r": "\\x0d"}.get(start, "'" + start)
    assert cleaned.startswith(expected)


def test_control_characters_and_bidi_never_reach_the_file() -> None:
    """ESC, NUL, newlines and bidi overrides become visible escapes."""
    cleaned = clean_field("a\x1b[31mb\x00c\nd\u202ee", 256)
    assert "a\\x1b[31mb\\x00c\\x0ad\\u202ee" == cleaned


def test_length_is_capped() -> None:
    """A huge attacker value is cut to the cap, marked with an ellipsis."""
    cleaned = clean_field("x" * 10_000, 256)
    assert (256, "…") == (len(cleaned), cleaned[-1])


def test_hostile_user_round_trips_as_one_harmless_row() -> None:
    """Quotes, separators, newlines and a formula in one username make one safe row."""
    hostile = '=HYPERLINK("http://evil";"x");\r\n\x1b]0;pwned\x07'
    data = encode_rows([row(event(user=hostile))])
    assert 1 == data.count(b"\n") and b"\x1b" not in data and b"\r" not in data
    (parsed,) = list(csv.reader(io.StringIO(data.decode()), delimiter=";"))
    assert parsed[3].startswith("'=HYPERLINK(")
    assert 12 == len(parsed)


def test_journal_creates_0640_with_header_even_with_open_umask(tmp_path: Path) -> None:
    """A new CSV is mode 0640 whatever the umask, and starts with the header."""
    path = tmp_path / "sub" / "mlsd.csv"
    old = os.umask(0)
    try:
        journal = CsvJournal(path)
        journal.open()
    finally:
        os.umask(old)
    journal.append(encode_rows([row(event())]))
    journal.sync()
    journal.close()
    assert 0o640 == stat.S_IMODE(path.stat().st_mode)
    lines = path.read_bytes().splitlines(keepends=True)
    assert HEADER == lines[0] and 2 == len(lines)


def test_journal_reopens_and_appends(tmp_path: Path) -> None:
    """Reopening keeps existing rows and appends after them."""
    path = tmp_path / "mlsd.csv"
    for user in ("a", "b"):
        journal = CsvJournal(path)
        journal.open()
        journal.append(encode_rows([row(event(user=user))]))
        journal.close()
    users = [r[3] for r in csv.reader(io.StringIO(path.read_text()), delimiter=";")][1:]
    assert ["a", "b"] == users


def test_journal_refuses_a_foreign_csv(tmp_path: Path) -> None:
    """A MailLogSentinel CSV is not appended to with a different column set."""
    path = tmp_path / "maillogsentinel.csv"
    path.write_text(MLS_HEADER + "\n")
    with pytest.raises(StateError, match="does not start with mlsd's header"):
        CsvJournal(path).open()


# ---- the fast paths give exactly what the plain formulations give

ZONES = [
    UTC,
    ZoneInfo("Europe/Paris"),
    ZoneInfo("Australia/Lord_Howe"),  # a 30-minute DST shift
    ZoneInfo("Asia/Kolkata"),  # a half-hour offset from UTC
    ZoneInfo("Africa/Monrovia"),  # LMT and then an offset with seconds, before 1972
]


@settings(max_examples=3000, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1),
        max_value=datetime(2040, 12, 31),
        timezones=st.sampled_from([*ZONES, timezone(timedelta(hours=-3, minutes=-30))]),
    ),
    st.sampled_from(ZONES),
    st.sampled_from(["iso", "maillogsentinel"]),
)
def test_date_column_equals_plain_formatting(when: datetime, tz: ZoneInfo, fmt: str) -> None:
    """The per-hour shortcut of format_date writes what isoformat/strftime would, whatever
    the zones, the offsets with seconds, and the DST folds and gaps."""
    local = when.astimezone(tz)
    expected = (
        local.strftime("%d/%m/%Y %H:%M")
        if fmt == "maillogsentinel"
        else local.isoformat(timespec="seconds")
    )
    assert expected == format_date(event(time=when), tz, fmt)


@pytest.mark.parametrize("tz", ZONES[1:3], ids=str)
def test_date_column_second_by_second_across_dst_changes(tz: ZoneInfo) -> None:
    """Every second of both 2026 transitions, each side, as isoformat writes it."""
    utc = {
        "Europe/Paris": [(2026, 3, 29, 0, 30), (2026, 10, 25, 0, 30)],
        "Australia/Lord_Howe": [(2026, 4, 4, 14, 30), (2026, 10, 3, 15, 0)],
    }[str(tz)]
    starts = [datetime(*t, tzinfo=UTC) for t in utc]
    for start in starts:
        for s in range(0, 2 * 3600):
            when = (start + timedelta(seconds=s)).astimezone(tz)
            assert when.isoformat(timespec="seconds") == format_date(event(time=when), tz, "iso")


def test_date_column_when_the_source_offset_changes_inside_the_hour() -> None:
    """Lord Howe falls back 30 minutes: 01:00-01:59 with fold=1 spans two offsets
    (01:00 is not ambiguous, 01:45 is), so that hour must not share one cached prefix."""
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    for minute in (0, 45):
        when = datetime(2026, 4, 5, 1, minute, tzinfo=lord_howe, fold=1)
        expected = when.astimezone(UTC).isoformat(timespec="seconds")
        assert expected == format_date(event(time=when), UTC, "iso")


@pytest.mark.parametrize(
    ("stamp", "iso", "mls"),
    [
        ("9999-12-31T23:59:59-12:00", "9999-12-31T23:59:59-12:00", "31/12/9999 23:59"),
        ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+14:00", "01/01/0001 00:00"),
    ],
)
@pytest.mark.parametrize("tz", [UTC, ZoneInfo("Pacific/Kiritimati")], ids=str)
def test_date_column_of_a_time_no_zone_can_show(
    stamp: str, iso: str, mls: str, tz: ZoneInfo
) -> None:
    """Behind the parser's Skip.OUT_OF_RANGE: should such an event reach a row anyway, the
    row is written, dated in the event's own offset, instead of raising OverflowError."""
    ev = event(time=datetime.fromisoformat(stamp))
    assert (iso, mls) == (row(ev, "iso", tz)[1], row(ev, "maillogsentinel", tz)[1])


def test_maillogsentinel_date_keeps_four_year_digits() -> None:
    """Years below 1000 are zero-padded (glibc's strftime writes year 2 as `2`)."""
    ev = event(time=datetime(2, 3, 4, 5, 6, tzinfo=UTC))
    assert "04/03/0002 05:06" == row(ev, "maillogsentinel")[1]


CELL = st.text(alphabet=st.sampled_from("a;\"\n\r= \x1b\u202eé,'-"), max_size=8)


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.lists(CELL, min_size=1, max_size=5), max_size=5))
def test_encode_rows_equals_the_csv_module(rows: list[list[str]]) -> None:
    """Rows that need no quoting skip the csv module; every row reads as the module writes it."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=";", quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerows(rows)
    assert buf.getvalue().encode() == encode_rows(rows)
