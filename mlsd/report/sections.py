"""The report's sections: from the day's figures (`mlsd.dayfigures`) and the days before
it to titled notes and tables (`report.document`), the same for the text and the HTML part.
Nothing is counted here: the figures come ranked and cut, from the store or the CSV."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Final

from mlsd.dayfigures import MANY_IPS, DayFigures, Group, PastDay, Ranked
from mlsd.report.charts import days_section, hours_section
from mlsd.report.display import mask, plain, shown
from mlsd.report.document import Col, Section, Table, decimal, number, pct, plural, size
from mlsd.rows import ReverseStatus

MEDIAN_DAYS: Final = 7
_NO_USER: Final = "(none)"
COMPARISON: Final = "Against yesterday and the previous 7 days"
_RDNS: Final[dict[str, str]] = {
    ReverseStatus.OK: "a name (Postfix resolved the client)",
    ReverseStatus.NONE: "no name (Postfix logged unknown)",
    ReverseStatus.NOT_AVAILABLE: "not in the log line (Dovecot)",
    ReverseStatus.OFF: "not looked up ([dns] reverse = off)",
}


@dataclass(frozen=True, slots=True)
class Context:
    """What the sections need besides the day's figures."""

    day: date
    start: datetime
    end: datetime
    partial: bool
    tz: tzinfo
    top: int
    masked: bool
    past: dict[date, PastDay | None]
    csv_path: Path
    csv_size: int
    csv_rows: int
    attachment: str
    source: str = ""
    """Where the figures came from, when it is worth a line (the CSV, while the store is
    behind)."""

    def user(self, user: str) -> str:
        if not user:
            return _NO_USER
        return shown(mask(user) if self.masked else user)

    def hhmm(self, epoch: int) -> str:
        return datetime.fromtimestamp(epoch, self.tz).strftime("%H:%M")


def week_median(ctx: Context) -> tuple[float | None, list[date]]:
    """The median of the failures of the MEDIAN_DAYS days before (None: none is known),
    and the days it is taken over."""
    week = [ctx.day - timedelta(days=k) for k in range(MEDIAN_DAYS, 0, -1)]
    known = [d for d in week if ctx.past.get(d) is not None]
    counts = [s.failures for d in known if (s := ctx.past[d]) is not None]
    return (statistics.median(counts) if counts else None), known


def _comparison(t: DayFigures, ctx: Context) -> Section:
    # Part of a day against whole days would make every morning look calm: no percentages.
    def change(value: float) -> str:
        return "" if ctx.partial else pct(t.failures, value)

    so_far = " so far" if ctx.partial else ""
    rows: list[tuple[str, ...]] = [(number(t.failures), f"{ctx.day.isoformat()}{so_far}", "")]
    yesterday = ctx.past.get(ctx.day - timedelta(days=1))
    if yesterday is None:
        rows.append(("?", "yesterday: not known (before the CSV began)", ""))
    else:
        rows.append((number(yesterday.failures), "yesterday", change(yesterday.failures)))
    median, known = week_median(ctx)
    if median is None:
        rows.append(("?", "7-day median: no history yet", ""))
    else:
        label = f"median of the previous {plural(len(known), 'day')}"
        rows.append((decimal(median), label, change(median)))
    cols = (Col("fails", "num"), Col("day"), Col("change"))
    return Section(COMPARISON, [], Table(cols, rows))


def sections_of(t: DayFigures, ctx: Context) -> list[Section]:
    """The report's sections, in the order the mail shows them."""
    out: list[Section] = []
    if t.events == 0:
        out.append(
            Section(
                "Total attempts",
                ["No failed authentications were recorded in this window: nothing to report."],
            )
        )
        out.append(_comparison(t, ctx))
        out.append(_days(t, ctx))
        out.append(_csv_section(ctx))
        return out
    rows: list[tuple[str, ...]]
    cols: tuple[Col, ...]
    out.append(
        Section(
            "Total attempts",
            [
                f"{plural(t.failures, 'failed attempt')} in {plural(t.events, 'event')}, from "
                f"{plural(t.ips, 'IP')}, against {plural(t.users, 'username')}."
            ],
        )
    )
    out.append(_comparison(t, ctx))
    # The pictures right after the figures they draw: the day among the days, its hours.
    out.append(_days(t, ctx))
    out.append(hours_section(t.histogram, ctx.start, ctx.end, ctx.tz))

    rows = [(number(c), shown(k or "?")) for k, c in t.services.top]
    cols = (Col("fails", "num"), Col("service"))
    out.append(Section("By service", [], Table(cols, rows, _more(t.services))))

    rows = [
        (number(p.failures), ctx.user(p.user), shown(p.ip), shown(p.hostname), shown(p.country))
        for p in t.pairs.top
    ]
    cols = (
        Col("fails", "num"),
        Col("user", "untrusted"),
        Col("IP", "ip"),
        Col("hostname", "untrusted"),
        Col("cc", "untrusted"),
    )
    out.append(Section("Top failed authentications", [], Table(cols, rows, _more(t.pairs))))

    rows = [
        (
            number(a.failures),
            number(a.users),
            shown(a.ip),
            shown(a.country),
            shown(a.asn),
            ctx.hhmm(a.first),
            ctx.hhmm(a.last),
            "" if a.seen_before is None else "seen" if a.seen_before else "new",
        )
        for a in t.addresses.top
    ]
    cols = (
        Col("fails", "num"),
        Col("users", "num"),
        Col("IP", "ip"),
        Col("cc", "untrusted"),
        Col("ASN", "untrusted", drop=3),
        Col("first", drop=2),
        Col("last", drop=2),
        Col("30d", drop=1),
    )
    notes = [
        "users: distinct usernames tried; first/last: seen at (local time); "
        "30d: new, or seen in the previous 30 days."
    ]
    out.append(Section("Top attacking IPs", notes, Table(cols, rows, _more(t.addresses))))

    cols = (Col("fails", "num"), Col("IPs", "num"), Col("network (/24, /48)", "ip"))
    out.append(Section("Top networks", [], _groups(t.networks, cols)))

    rows = [(number(g.failures), number(g.ips), ctx.user(g.key)) for g in t.usernames.top]
    cols = (Col("fails", "num"), Col("IPs", "num"), Col("user", "untrusted"))
    out.append(Section("Top usernames", [], Table(cols, rows, _more(t.usernames))))

    rows = [
        (number(w.ips), number(w.failures), number(w.countries), ctx.user(w.user))
        for w in t.spread.top
    ]
    cols = (
        Col("IPs", "num"),
        Col("fails", "num"),
        Col("countries", "num"),
        Col("user", "untrusted"),
    )
    notes = [f"Usernames tried from {MANY_IPS} or more IPs: a distributed attack on one account."]
    if not rows:
        notes.append("None today.")
    out.append(
        Section(
            "Usernames attacked from many IPs",
            notes,
            Table(cols, rows, _more(t.spread)) if rows else None,
        )
    )

    out.append(_new_attackers(t))

    for title, ranked, col in (
        ("Top countries", t.countries, "country"),
        ("Top ASN", t.asns, "ASN"),
        ("Top ASO (network owners)", t.orgs, "organisation"),
    ):
        if col == "ASN":
            rows = [
                (number(g.failures), number(g.ips), shown(g.key), shown(g.label))
                for g in ranked.top
            ]
            cols = (
                Col("fails", "num"),
                Col("IPs", "num"),
                Col("ASN", "untrusted"),
                Col("organisation", "untrusted"),
            )
            out.append(Section(title, [], Table(cols, rows, _more(ranked))))
        else:
            cols = (Col("fails", "num"), Col("IPs", "num"), Col(col, "untrusted"))
            out.append(Section(title, [], _groups(ranked, cols)))

    rows = [(number(c), shown(k), _RDNS.get(k, "")) for k, c in t.rdns.top]
    cols = (Col("fails", "num"), Col("status", "untrusted"), Col("meaning"))
    out.append(Section("Reverse DNS", [], Table(cols, rows, _more(t.rdns))))

    out.append(_csv_section(ctx))
    return out


def _groups(ranked: Ranked[Group], cols: Sequence[Col]) -> Table:
    rows = [(number(g.failures), number(g.ips), shown(g.key)) for g in ranked.top]
    return Table(tuple(cols), rows, _more(ranked))


def _new_attackers(t: DayFigures) -> Section:
    title = "New attackers"
    n = t.newcomers
    if not n.known_days:
        return Section(title, ["Not known: the CSV holds none of the previous 30 days."])
    notes = [
        f"{plural(n.new, 'IP')} ({plural(n.new_failures, 'failure')}) not seen in the previous "
        f"{plural(n.known_days, 'day')}; {plural(n.seen, 'IP')} "
        f"({plural(n.seen_failures, 'failure')}) seen before."
    ]
    if not n.new:
        return Section(title, notes)
    rows = [(number(a.failures), shown(a.ip), shown(a.country), shown(a.asn)) for a in n.top.top]
    cols = (
        Col("fails", "num"),
        Col("new IP", "ip"),
        Col("cc", "untrusted"),
        Col("ASN", "untrusted", drop=1),
    )
    return Section(title, notes, Table(cols, rows, _more(n.top)))


def _days(t: DayFigures, ctx: Context) -> Section:
    return days_section(ctx.day, t.failures, ctx.partial, ctx.past)


def _csv_section(ctx: Context) -> Section:
    return Section(
        "The CSV",
        [
            f"{plain(str(ctx.csv_path))}: {size(ctx.csv_size)}, {number(ctx.csv_rows)} rows.",
            ctx.attachment,
            *([ctx.source] if ctx.source else []),
        ],
    )


def _more(ranked: Ranked[Any]) -> str:
    """The "… and N more" line for what a top list left out (empty when nothing)."""
    if ranked.rest <= 0:
        return ""
    return f"… and {ranked.rest:,} more ({ranked.rest_value:,} failures)"
