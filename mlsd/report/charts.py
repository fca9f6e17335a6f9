"""The report's two charts as sections: failures per hour of the window, and the daily
totals of the last 30 days with the report day marked.

Each is a `document.Chart`: the HTML part draws it as bars (`report.chart_html`), the text
part prints it as its table with `#` bars. Only mlsd's own text is in them (hours, dates,
counts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Final

from mlsd.dayfigures import PastDay
from mlsd.report.document import Bar, Chart, Section, decimal, plural

DAYS_SHOWN: Final = 30
"""Bars of the daily chart: the report day and the 29 days before it."""
HOURS_TITLE: Final = "Hour by hour"
DAYS_TITLE: Final = "The last 30 days"


def hours_section(histogram: Sequence[int], start: datetime, end: datetime, tz: tzinfo) -> Section:
    """Failures per hour of the window [start, end), labelled in local time (with the zone
    abbreviation on a day the clocks change: it has 23 or 25 hours)."""
    local_start = start.astimezone(tz)
    local_end = end.astimezone(tz)
    shifts = local_start.utcoffset() != (start + timedelta(days=1)).astimezone(tz).utcoffset()
    bars = []
    for hour, count in enumerate(histogram):
        at = (start + timedelta(hours=hour)).astimezone(tz)
        title = f"{at:%H:%M} {at:%Z}" if shifts else f"{at:%H:%M}"
        bars.append(Bar(label=f"{at:%H}", title=title, value=count))
    span = (end - start).total_seconds() / 3600
    notes = [
        f"Failures per hour from {local_start:%H:%M} to {local_end:%H:%M} "
        f"({decimal(round(span, 1))} h), local time."
    ]
    if shifts:
        notes.append("The clocks changed this day: each hour shows its zone abbreviation.")
    return Section(HOURS_TITLE, notes, chart=Chart("hour", tuple(bars)))


def days_section(
    day: date, failures: int, partial: bool, past: Mapping[date, PastDay | None]
) -> Section:
    """Failed attempts per day: the DAYS_SHOWN days ending with the report day, which is
    marked. Days before the CSV began are not known: they are left out and the note says
    so, rather than drawn as quiet days."""
    days = [day - timedelta(days=k) for k in range(DAYS_SHOWN - 1, 0, -1)]
    known = [d for d in days if past.get(d) is not None]
    bars = []
    for d in days:
        summary = past.get(d)
        if summary is not None:
            bars.append(Bar(label=f"{d.day:02d}", title=d.isoformat(), value=summary.failures))
    so_far = ", so far" if partial else ""
    bars.append(
        Bar(
            label=f"{day.day:02d}",
            title=f"{day.isoformat()} (report day{so_far})",
            value=failures,
            marked=True,
        )
    )
    notes = ["Failed attempts per day, the report day last."]
    if not known:
        notes.append("The days before are not known: the CSV holds none of them.")
    elif len(known) < len(days):
        notes.append(
            f"Not known before {known[0].isoformat()}: the CSV begins then "
            f"({plural(len(known), 'earlier day')} known)."
        )
    return Section(DAYS_TITLE, notes, chart=Chart("day", tuple(bars), mark="the report day"))
