"""The report's sections: from the day's tally and the history before it to titled notes
and tables (`report.document`), the same for the text and the HTML part."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from heapq import nsmallest
from pathlib import Path
from typing import Final, TypeVar

from mlsd.report.charts import days_section, hours_section
from mlsd.report.daycache import DaySummary
from mlsd.report.display import mask, plain, shown
from mlsd.report.document import Col, Section, Table, decimal, number, pct, plural, size
from mlsd.report.tally import Tally, network
from mlsd.rows import ReverseStatus

MEDIAN_DAYS: Final = 7
MANY_IPS: Final = 3
"""A username tried from at least this many IPs in a day is listed as a distributed attack."""
_NO_USER: Final = "(none)"
K = TypeVar("K", str, tuple[str, str], tuple[str, str, str, str])
COMPARISON: Final = "Against yesterday and the previous 7 days"
_RDNS: Final[dict[str, str]] = {
    ReverseStatus.OK: "a name (Postfix resolved the client)",
    ReverseStatus.NONE: "no name (Postfix logged unknown)",
    ReverseStatus.NOT_AVAILABLE: "not in the log line (Dovecot)",
    ReverseStatus.OFF: "not looked up ([dns] reverse = off)",
}


@dataclass(frozen=True, slots=True)
class Context:
    """What the sections need besides the tally."""

    day: date
    start: datetime
    end: datetime
    partial: bool
    tz: tzinfo
    top: int
    masked: bool
    past: dict[date, DaySummary | None]
    csv_path: Path
    csv_size: int
    csv_rows: int
    attachment: str

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


def _comparison(t: Tally, ctx: Context) -> Section:
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


def sections_of(t: Tally, ctx: Context) -> list[Section]:
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
    n = ctx.top
    rows: list[tuple[str, ...]]
    cols: tuple[Col, ...]
    out.append(
        Section(
            "Total attempts",
            [
                f"{plural(t.failures, 'failed attempt')} in {plural(t.events, 'event')}, from "
                f"{plural(len(t.ips), 'IP')}, against {plural(len(t.users), 'username')}."
            ],
        )
    )
    out.append(_comparison(t, ctx))
    # The pictures right after the figures they draw: the day among the days, its hours.
    out.append(_days(t, ctx))
    out.append(hours_section(t.histogram, ctx.start, ctx.end, ctx.tz))

    top, more = _ranked(t.services, n)
    rows = [(number(c), shown(k or "?")) for k, c in top]
    out.append(Section("By service", [], Table((Col("fails", "num"), Col("service")), rows, more)))

    auth, more = _ranked(t.pairs, n)
    rows = [
        (number(c), ctx.user(u), shown(ip), shown(t.pair_host[u, ip]), shown(t.pair_cc[u, ip]))
        for (u, ip), c in auth
    ]
    cols = (
        Col("fails", "num"),
        Col("user", "untrusted"),
        Col("IP", "ip"),
        Col("hostname", "untrusted"),
        Col("cc", "untrusted"),
    )
    out.append(Section("Top failed authentications", [], Table(cols, rows, more)))

    past_ips = _Past(ctx)
    ips, more = _ranked(t.ips, n)
    rows = [
        (
            number(c),
            number(len(t.ip_users[ip])),
            shown(ip),
            shown(t.ip_cc[ip]),
            shown(t.ip_asn[ip]),
            ctx.hhmm(t.ip_first[ip]),
            ctx.hhmm(t.ip_last[ip]),
            ("new" if ip not in past_ips else "seen") if past_ips else "",
        )
        for ip, c in ips
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
    out.append(Section("Top attacking IPs", notes, Table(cols, rows, more)))

    nets: Counter[str] = Counter()
    net_ips: defaultdict[str, set[str]] = defaultdict(set)
    for ip, c in t.ips.items():
        net = network(ip)
        nets[net] += c
        net_ips[net].add(ip)
    top_nets, more = _ranked(nets, n)
    rows = [(number(c), number(len(net_ips[k])), shown(k)) for k, c in top_nets]
    cols = (Col("fails", "num"), Col("IPs", "num"), Col("network (/24, /48)", "ip"))
    out.append(Section("Top networks", [], Table(cols, rows, more)))

    users, more = _ranked(t.users, n)
    rows = [(number(c), number(len(t.user_ips[u])), ctx.user(u)) for u, c in users]
    cols = (Col("fails", "num"), Col("IPs", "num"), Col("user", "untrusted"))
    out.append(Section("Top usernames", [], Table(cols, rows, more)))

    spread: Counter[str] = Counter({u: len(s) for u, s in t.user_ips.items() if len(s) >= MANY_IPS})
    wide, more = _ranked(spread, n)
    rows = [
        (
            number(k),
            number(t.users[u]),
            number(len({t.ip_cc[ip] for ip in t.user_ips[u]})),
            ctx.user(u),
        )
        for u, k in wide
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
            "Usernames attacked from many IPs", notes, Table(cols, rows, more) if rows else None
        )
    )

    out.append(_new_attackers(t, ctx, past_ips))

    for title, counter, sets, col in (
        ("Top countries", t.countries, t.country_ips, "country"),
        ("Top ASN", t.asns, t.asn_ips, "ASN"),
        ("Top ASO (network owners)", t.orgs, t.org_ips, "organisation"),
    ):
        top, more = _ranked(counter, n)
        if col == "ASN":
            rows = [
                (number(c), number(len(sets[k])), shown(k), shown(t.asn_org[k])) for k, c in top
            ]
            cols = (
                Col("fails", "num"),
                Col("IPs", "num"),
                Col("ASN", "untrusted"),
                Col("organisation", "untrusted"),
            )
        else:
            rows = [(number(c), number(len(sets[k])), shown(k)) for k, c in top]
            cols = (Col("fails", "num"), Col("IPs", "num"), Col(col, "untrusted"))
        out.append(Section(title, [], Table(cols, rows, more)))

    top, more = _ranked(t.rdns, n)
    rows = [(number(c), shown(k), _RDNS.get(k, "")) for k, c in top]
    cols = (Col("fails", "num"), Col("status", "untrusted"), Col("meaning"))
    out.append(Section("Reverse DNS", [], Table(cols, rows, more)))

    out.append(_csv_section(ctx))
    return out


class _Past:
    """The IPs of the previous days, newest first; `None`-like (falsy) when none is known."""

    def __init__(self, ctx: Context) -> None:
        # Kept as the per-day sets: a union of 30 sets would cost more than the lookups.
        known = sorted(((d, s) for d, s in ctx.past.items() if s is not None), reverse=True)
        self.days = len(known)
        self._sets = [s.ips for _, s in known]

    def __bool__(self) -> bool:
        return bool(self.days)

    def __contains__(self, ip: str) -> bool:
        return any(ip in ips for ips in self._sets)


def _new_attackers(t: Tally, ctx: Context, past: _Past) -> Section:
    title = "New attackers"
    if not past:
        return Section(title, ["Not known: the CSV holds none of the previous 30 days."])
    days = past.days
    new = [ip for ip in t.ips if ip not in past]
    new_failures = sum(t.ips[ip] for ip in new)
    seen = len(t.ips) - len(new)
    seen_failures = t.failures - new_failures
    notes = [
        f"{plural(len(new), 'IP')} ({plural(new_failures, 'failure')}) not seen in the previous "
        f"{plural(days, 'day')}; {plural(seen, 'IP')} ({plural(seen_failures, 'failure')}) "
        "seen before."
    ]
    if not new:
        return Section(title, notes)
    top, more = _ranked(Counter({ip: t.ips[ip] for ip in new}), ctx.top)
    rows = [(number(c), shown(ip), shown(t.ip_cc[ip]), shown(t.ip_asn[ip])) for ip, c in top]
    cols = (
        Col("fails", "num"),
        Col("new IP", "ip"),
        Col("cc", "untrusted"),
        Col("ASN", "untrusted", drop=1),
    )
    return Section(title, notes, Table(cols, rows, more))


def _days(t: Tally, ctx: Context) -> Section:
    return days_section(ctx.day, t.failures, ctx.partial, ctx.past)


def _csv_section(ctx: Context) -> Section:
    return Section(
        "The CSV",
        [
            f"{plain(str(ctx.csv_path))}: {size(ctx.csv_size)}, {number(ctx.csv_rows)} rows.",
            ctx.attachment,
        ],
    )


def _ranked(counter: Counter[K], n: int) -> tuple[list[tuple[K, int]], str]:
    """The n largest (ties broken by key, so a report is reproducible) and the
    "… and N more" line for the rest (empty when nothing is left out)."""
    top = nsmallest(n, counter.items(), key=lambda kv: (-kv[1], kv[0]))
    rest = len(counter) - len(top)
    if rest <= 0:
        return top, ""
    rest_failures = sum(counter.values()) - sum(v for _, v in top)
    return top, f"… and {rest:,} more ({rest_failures:,} failures)"
