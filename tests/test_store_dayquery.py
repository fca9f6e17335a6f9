"""Every figure of the day report, computed by the store's SQL, equals the CSV's count.

The oracle is `mlsd.report.tally.Tally` over the CSV's own rows: for each corpus day (in
UTC and in Paris time) and for synthetic days chosen to reach every tie rule (an IP seen
with two countries, pairs with and without a hostname, usernames from many IPs, IPv6
networks, top lists cut short), `StoreDays.day` and `Tally.figures` must be equal, entry
for entry, and so must the days before. `tests/test_report.py` renders whole reports both
ways too.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mlsd.dayfigures import DayFigures, PastDay
from mlsd.ingest.csvlog import RowFormat
from mlsd.report import compose, window
from mlsd.report.daycache import DaySummary
from mlsd.report.history import days_before
from mlsd.report.schedule import report_window
from mlsd.report.tally import Tally
from mlsd.rows import HEADER, AuthFailure, Enrichment
from mlsd.store.dayquery import StoreDays
from tests.storekit import events, sqlite_of, write_csv
from tests.test_store_queries import CORPUS_FILES, corpus_events

PARIS = ZoneInfo("Europe/Paris")


def store_of(tmp_path: Path, csv: Path) -> StoreDays:
    """The store of the CSV's rows, as the daemon's store holds them."""
    return StoreDays(sqlite_of(csv, tmp_path / "events.sqlite3"))


def rows_of(csv: Path) -> list[tuple[int, list[str]]]:
    """Every row of the CSV in file order (no window, no early stop)."""
    fd = os.open(csv, os.O_RDONLY)
    try:
        return [(t, f) for t, f, _ in window.Rows(fd, 0, window.Stamps(UTC))]
    finally:
        os.close(fd)


def expected(
    rows: list[tuple[int, list[str]]], day: date, tz: tzinfo, top: int
) -> tuple[DayFigures, dict[date, PastDay | None]]:
    """The CSV count: the day's figures, and its 30 days before (None before the first
    row), each day's IPs deciding which of the day's are new."""
    start, end = (int(x.timestamp()) for x in report_window(day, tz))
    tally = Tally(start, -(-(end - start) // 3600))
    tally.add_all((t, f) for t, f in rows if start <= t < end)
    tally.derive()
    first = min(t for t, _ in rows)
    summaries: dict[date, DaySummary | None] = {}
    for d in days_before(day):
        s, e = (int(x.timestamp()) for x in report_window(d, tz))
        if e <= first:
            summaries[d] = None
            continue
        inside = [(t, f) for t, f in rows if s <= t < e]
        ips = frozenset(f[2] for _, f in inside)
        failures = sum(int(f[-1]) for _, f in inside)
        summaries[d] = DaySummary(len(inside), failures, ips)
    past = {d: None if v is None else PastDay(v.rows, v.failures) for d, v in summaries.items()}
    return tally.figures(top, summaries), past


def from_sql(
    source: StoreDays, day: date, tz: tzinfo, top: int
) -> tuple[DayFigures, dict[date, PastDay | None]]:
    """What compose asks of the store for `day`."""
    start, end = report_window(day, tz)
    return compose.figures_from(source, day, start, end, tz=tz, top=top)


def assert_days_equal(csv: Path, source: StoreDays, days: list[date], tz: tzinfo, top: int) -> None:
    rows = rows_of(csv)
    for day in days:
        want, want_past = expected(rows, day, tz, top)
        got, got_past = from_sql(source, day, tz, top)
        assert got == want, day
        assert got_past == want_past, day


@pytest.mark.parametrize("jsonl", CORPUS_FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("tz", [UTC, PARIS], ids=["UTC", "Paris"])
def test_corpus_days_have_the_csv_counts_figures(tmp_path: Path, jsonl: Path, tz: tzinfo) -> None:
    evs = sorted(corpus_events(jsonl), key=lambda ev: ev.time)
    csv = tmp_path / "events.csv"
    write_csv(csv, evs)
    days = sorted({e.time.astimezone(tz).date() for e in evs})
    assert_days_equal(csv, store_of(tmp_path, csv), days, tz, top=5)


def varied(n: int, seed: int, start: datetime) -> tuple[list[AuthFailure], list[Enrichment]]:
    """Failures from few IPs (v4 and v6) and users, each row enriched on its own: an IP's
    country and ASN change within the day, hostnames come and go, so every tie rule of
    the figures is reached."""
    rnd = random.Random(seed)
    ips = [f"198.51.{k % 3}.{k}" for k in range(12)] + [f"2001:db8:{k}::{k + 1}" for k in range(6)]
    evs = events(n, seed=seed, start=start)
    out, extra = [], []
    for ev in evs:
        ip = rnd.choice(ips)
        host = rnd.choice(["", "unknown", f"h{rnd.randint(1, 3)}.example"])
        status = "N/A" if not host else ("NONE" if host == "unknown" else "OK")
        cc, asn, aso = rnd.choice(
            [("NL", "AS64500", "Example; Net"), ("DE", "AS64501", "Other"), ("N/A", "N/A", "N/A")]
        )
        out.append(ev._replace(ip=ip, user=rnd.choice(["admin", "root", "a;b", "ü", None])))
        extra.append(Enrichment(host, status, cc, asn, aso))
    return out, extra


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("top", [3, 10])
def test_varied_days_have_the_csv_counts_figures(tmp_path: Path, seed: int, top: int) -> None:
    evs, extra = varied(2500, seed, datetime(2026, 11, 22, 20, 0, tzinfo=UTC))
    enrichment = dict(zip((id(e) for e in evs), extra, strict=True))
    fmt = RowFormat(tz=UTC, date_format="iso", cap=256)
    csv = tmp_path / "events.csv"
    csv.write_bytes(HEADER + fmt.encode(evs, lambda ev: enrichment[id(ev)]))
    days = sorted({e.time.astimezone(PARIS).date() for e in evs})
    assert len(days) >= 3
    assert_days_equal(csv, store_of(tmp_path, csv), days, PARIS, top)


def test_a_far_future_row_hides_none_of_the_days_figures(tmp_path: Path) -> None:
    """Issue 17: a row stamped years ahead among the day's rows. The store reads by time:
    its figures are those of all the day's rows, where the CSV's window stops at it."""
    evs = events(1500, seed=11, start=datetime(2026, 11, 25, 0, 0, tzinfo=UTC))
    evs.insert(700, evs[700]._replace(time=datetime(2031, 1, 1, tzinfo=UTC), ip="203.0.113.9"))
    csv = tmp_path / "events.csv"
    write_csv(csv, evs)
    day = date(2026, 11, 25)
    got, _ = from_sql(store_of(tmp_path, csv), day, UTC, 10)
    want, _ = expected(rows_of(csv), day, UTC, 10)
    assert got == want
    start, end = report_window(day, UTC)
    in_window = sum(1 for _ in window.window(csv, start, end, UTC))
    assert got.events == 1500 > in_window  # the CSV's window misses rows after it


def test_users_with_many_ips_count_each_ips_own_country(tmp_path: Path) -> None:
    """ "Usernames attacked from many IPs": countries are those of the IPs (each IP's
    country over the whole day), computed in SQL however many IPs a user has."""
    base = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    spots = defaultdict(list)
    evs: list[AuthFailure] = []
    extra: list[Enrichment] = []
    for k in range(400):
        ip = f"2001:db8:{k}::1"
        cc = ("NL", "DE", "FR")[k % 3]
        ev = events(1, seed=k, start=base + timedelta(seconds=k))[0]
        evs.append(ev._replace(ip=ip, user="victim"))
        extra.append(Enrichment("", "N/A", cc, "AS64500", "Example"))
        spots[cc].append(ip)
    fmt = RowFormat(tz=UTC, date_format="iso", cap=256)
    csv = tmp_path / "events.csv"
    pairs = dict(zip((id(e) for e in evs), extra, strict=True))
    csv.write_bytes(HEADER + fmt.encode(evs, lambda ev: pairs[id(ev)]))
    got, _ = from_sql(store_of(tmp_path, csv), date(2026, 11, 25), UTC, 5)
    assert [(s.user, s.ips, s.countries) for s in got.spread.top] == [("victim", 400, 3)]
    assert got.networks.rest == 395  # 400 /48s, 5 shown


def test_an_ips_country_tie_goes_to_the_first_seen(tmp_path: Path) -> None:
    """An IP with one failure from NL then one from DE is NL's (the first seen), so the
    user tried from it and from three DE addresses is attacked from two countries."""
    base = datetime(2026, 11, 25, 1, 0, tzinfo=UTC)
    plan = [("192.0.2.1", "NL"), ("192.0.2.1", "DE")] + [(f"192.0.2.{k}", "DE") for k in (2, 3, 4)]
    evs = [
        events(1, seed=k, start=base + timedelta(minutes=k))[0]._replace(
            ip=ip, user="victim", attempts=1
        )
        for k, (ip, _) in enumerate(plan)
    ]
    extra = {
        id(ev): Enrichment("", "N/A", cc, "AS64500", "Example")
        for ev, (_, cc) in zip(evs, plan, strict=True)
    }
    csv = tmp_path / "events.csv"
    csv.write_bytes(
        HEADER + RowFormat(tz=UTC, date_format="iso", cap=256).encode(evs, lambda ev: extra[id(ev)])
    )
    got, _ = from_sql(store_of(tmp_path, csv), date(2026, 11, 25), UTC, 5)
    want, _ = expected(rows_of(csv), date(2026, 11, 25), UTC, 5)
    assert [(s.ips, s.countries) for s in got.spread.top] == [(4, 2)]
    assert got == want
    assert [a.country for a in got.addresses.top if a.ip == "192.0.2.1"] == ["NL"]
