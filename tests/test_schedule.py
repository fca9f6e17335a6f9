"""The report schedule: tables across DST both ways, month and year ends, 30-minute shifts."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from mlsd.report.schedule import (
    due_day,
    missed_days,
    next_report_at,
    report_window,
    wall_time,
)

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # DST shifts by 30 minutes


def utc(s: str) -> datetime:
    return datetime.fromisoformat(s).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("day", "tz", "start", "hours"),
    [
        (date(2026, 11, 25), PARIS, "2026-11-24T23:00", 24),
        (date(2026, 3, 29), PARIS, "2026-03-28T23:00", 23),  # spring forward
        (date(2026, 10, 25), PARIS, "2026-10-24T22:00", 25),  # fall back
        (date(2026, 3, 8), NEW_YORK, "2026-03-08T05:00", 23),
        (date(2026, 11, 1), NEW_YORK, "2026-11-01T04:00", 25),
        (date(2026, 10, 4), LORD_HOWE, "2026-10-03T13:30", 23.5),  # +10:30 → +11:00
        (date(2026, 4, 5), LORD_HOWE, "2026-04-04T13:00", 24.5),  # +11:00 → +10:30
        (date(2026, 12, 31), PARIS, "2026-12-30T23:00", 24),  # year end
        (date(2028, 2, 29), UTC, "2028-02-29T00:00", 24),  # leap day
    ],
)
def test_report_window(day: date, tz: ZoneInfo, start: str, hours: float) -> None:
    """A report day is [00:00, 24:00) local: 23, 23.5, 24, 24.5 or 25 hours long."""
    lo, hi = report_window(day, tz)
    assert (utc(start), timedelta(hours=hours)) == (lo, hi - lo)


@pytest.mark.parametrize(
    ("after", "at", "tz", "expected"),
    [
        # Ordinary day: later today, or tomorrow once passed; strictly after.
        ("2026-11-25T10:00", time(0, 15), PARIS, "2026-11-25T23:15"),
        ("2026-11-25T23:15", time(0, 15), PARIS, "2026-11-26T23:15"),
        ("2026-11-25T23:14:59", time(0, 15), PARIS, "2026-11-25T23:15"),
        # 02:30 does not exist on 2026-03-29 in Paris: fires when the jump ends, 03:00 CEST.
        ("2026-03-28T12:00", time(2, 30), PARIS, "2026-03-29T01:00"),
        # 02:30 happens twice on 2026-10-25 in Paris: first occurrence only (CEST, +02:00).
        ("2026-10-24T12:00", time(2, 30), PARIS, "2026-10-25T00:30"),
        ("2026-10-25T00:30", time(2, 30), PARIS, "2026-10-26T01:30"),
        # New York spring gap 02:00 to 03:00.
        ("2026-03-07T12:00", time(2, 15), NEW_YORK, "2026-03-08T07:00"),
        # Lord Howe: 02:00 → 02:30 on 2026-10-04; 02:10 does not exist, fires at 02:30 (+11).
        ("2026-10-03T00:00", time(2, 10), LORD_HOWE, "2026-10-03T15:30"),
        # Lord Howe: 02:00 → 01:30 on 2026-04-05; 01:45 exists twice, first is +11:00.
        ("2026-04-04T00:00", time(1, 45), LORD_HOWE, "2026-04-04T14:45"),
        # Month and year ends.
        ("2026-01-31T23:30", time(0, 15), UTC, "2026-02-01T00:15"),
        ("2026-12-31T23:30", time(0, 15), UTC, "2027-01-01T00:15"),
        ("2028-02-28T23:30", time(0, 15), UTC, "2028-02-29T00:15"),
    ],
)
def test_next_report_at(after: str, at: time, tz: ZoneInfo, expected: str) -> None:
    """The next send instant is the first wall-clock `at` strictly after `after`."""
    assert utc(expected) == next_report_at(utc(after), at, tz)


def test_next_report_at_never_returns_the_past_across_a_year_of_days() -> None:
    """Stepping through a year hour by hour, the next send is always after `now`, ≤ 25 h away."""
    now = utc("2026-01-01T00:00")
    for _ in range(366 * 24):
        nxt = next_report_at(now, time(2, 30), PARIS)
        assert now < nxt <= now + timedelta(hours=25)
        now += timedelta(hours=1)


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-11-25T23:14", date(2026, 11, 24)),  # Paris 00:14 on the 26th: not yet
        ("2026-11-25T23:15", date(2026, 11, 25)),  # Paris 00:15 on the 26th: the 25th is due
        ("2027-01-01T00:00", date(2026, 12, 31)),  # Paris 01:00 on Jan 1: Dec 31 is due (00:15)
    ],
)
def test_due_day(now: str, expected: date) -> None:
    """The report of day D is due at `time` on D+1, in the report's zone."""
    assert expected == due_day(utc(now), time(0, 15), PARIS)


def test_missed_days_after_downtime_and_on_a_fresh_install() -> None:
    """Down for three days: three reports, oldest first; never sent: only the latest."""
    now = utc("2026-11-25T12:00")
    assert [date(2026, 11, 22), date(2026, 11, 23), date(2026, 11, 24)] == missed_days(
        date(2026, 11, 21), now, time(0, 15), UTC
    )
    assert [] == missed_days(date(2026, 11, 24), now, time(0, 15), UTC)
    assert [date(2026, 11, 24)] == missed_days(None, now, time(0, 15), UTC)
    assert 7 == len(missed_days(date(2026, 1, 1), now, time(0, 15), UTC))


def test_wall_time_in_a_gap_is_the_end_of_the_gap() -> None:
    """A skipped wall-clock time maps to the first minute after the jump."""
    assert utc("2026-03-29T01:00") == wall_time(date(2026, 3, 29), time(2, 0), PARIS)


D = date(2026, 11, 25)
_DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("last_sent", "now", "first_day", "expected"),
    [
        # Fresh install, first start on D at 14:00 UTC: no report of D-1, which it never saw.
        (None, "2026-11-25T14:00", D, []),
        # The same before D's send time: not the day before yesterday either.
        (None, "2026-11-25T00:10", D, []),
        # At 00:15 on D+1 the first report is D's own (partial: started at 14:00).
        (None, "2026-11-26T00:14", D, []),
        (None, "2026-11-26T00:15", D, [D]),
        # Down over D+1 and D+2 without ever sending: only the latest, as before.
        (None, "2026-11-28T12:00", D, [D + 2 * _DAY]),
        # First day unknown (coverage.json lost or older): the latest due day, as before.
        (None, "2026-11-25T14:00", None, [D - _DAY]),
        # A report was sent, then the state was reset and mlsd started again on D (its
        # first day is then D): the days before D are not caught up.
        (D - 5 * _DAY, "2026-11-26T12:00", D, [D]),
        # A long stop after D: every missed day is caught up (the log was read on restart).
        (D, "2026-11-29T12:00", D, [D + _DAY, D + 2 * _DAY, D + 3 * _DAY]),
    ],
)
def test_missed_days_never_before_the_first_watched_day(
    last_sent: date | None, now: str, first_day: date | None, expected: list[date]
) -> None:
    """No daily report for a day before the first one mlsd watched at least in part."""
    assert expected == missed_days(last_sent, utc(now), time(0, 15), UTC, first_day=first_day)
