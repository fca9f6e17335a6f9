"""Counting the window's rows in Python, once, into the day's figures (`mlsd.dayfigures`).

The report reads its figures from the event store's SQL; this is the other producer: the
fallback while the store is not caught up with the CSV, and the oracle the store's
figures are tested against (on the corpus days, equal entry for entry).

Counts: "failures" are failed attempts, the sum of the `attempts` column (Dovecot folds
several into one row); "events" are rows. Every top list, histogram and comparison counts
failures.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import date
from heapq import nsmallest
from typing import TypeVar

from mlsd.dayfigures import (
    MANY_IPS,
    Address,
    DayFigures,
    Group,
    NewAddress,
    Newcomers,
    Pair,
    Ranked,
    Spread,
    network,
)
from mlsd.report.daycache import DaySummary
from mlsd.rows import Column, attempts_of

K = TypeVar("K", str, tuple[str, str])
__all__ = ["Tally", "network"]


class Tally:
    """The window's rows counted once, into the few counters every section derives from."""

    def __init__(self, start: int, hours: int) -> None:
        self.start = start
        self.failures = 0
        self.events = 0
        self.auth: Counter[tuple[str, str, str, str]] = Counter()
        """(user, ip, hostname, country) → failures."""
        self.geo: Counter[tuple[str, str, str, str]] = Counter()
        """(ip, country, asn, aso) → failures: per-IP, country, ASN and owner figures."""
        self.users: Counter[str] = Counter()
        self.user_ips: defaultdict[str, set[str]] = defaultdict(set)
        self.ip_users: defaultdict[str, set[str]] = defaultdict(set)
        self.ip_first: dict[str, int] = {}
        self.ip_last: dict[str, int] = {}
        self.rdns: Counter[str] = Counter()
        self.services: Counter[str] = Counter()
        self.histogram = [0] * hours

    def add_all(self, rows: Iterable[tuple[int, list[str]]]) -> None:
        """Count rows: (time in epoch seconds, fields in COLUMNS order).

        One loop with everything in locals: it runs once per row of the day.
        """
        auth, geo, users, rdns, services = self.auth, self.geo, self.users, self.rdns, self.services
        user_ips, ip_users = self.user_ips, self.ip_users
        first, last, histogram = self.ip_first, self.ip_last, self.histogram
        start, hours = self.start, len(self.histogram)
        failures = events = 0
        # The columns as plain ints in locals: indexed ten times per row.
        ip_at, user_at, host_at, rdns_at, cc_at, asn_at, aso_at, service_at, attempts_at = (
            int(c)
            for c in (
                Column.IP,
                Column.USER,
                Column.HOSTNAME,
                Column.REVERSE_DNS_STATUS,
                Column.COUNTRY_CODE,
                Column.ASN,
                Column.ASO,
                Column.SERVICE,
                Column.ATTEMPTS,
            )
        )
        for t, f in rows:
            attempts = f[attempts_at]
            n = 1 if attempts == "1" else attempts_of(attempts)
            ip, user, cc = f[ip_at], f[user_at], f[cc_at]
            failures += n
            events += 1
            auth[(user, ip, f[host_at], cc)] += n
            geo[(ip, cc, f[asn_at], f[aso_at])] += n
            users[user] += n
            user_ips[user].add(ip)
            ip_users[ip].add(user)
            if t < first.get(ip, t + 1):
                first[ip] = t
            if t > last.get(ip, t - 1):
                last[ip] = t
            rdns[f[rdns_at]] += n
            services[f[service_at]] += n
            hour = (t - start) // 3600
            if 0 <= hour < hours:
                histogram[hour] += n
        self.failures += failures
        self.events += events

    def derive(self) -> None:
        """Per-IP, per-country, per-ASN and per-owner figures from `geo`."""
        self.ips: Counter[str] = Counter()
        self.countries: Counter[str] = Counter()
        self.asns: Counter[str] = Counter()
        self.orgs: Counter[str] = Counter()
        self.country_ips: defaultdict[str, set[str]] = defaultdict(set)
        self.asn_ips: defaultdict[str, set[str]] = defaultdict(set)
        self.org_ips: defaultdict[str, set[str]] = defaultdict(set)
        self.asn_org: dict[str, str] = {}
        # An IP's country and ASN: those of most of its failures (a database update
        # during the day can change them; ties go to the first seen).
        best: dict[str, tuple[int, str, str]] = {}
        for (ip, cc, asn, aso), n in self.geo.items():
            self.ips[ip] += n
            self.countries[cc] += n
            self.country_ips[cc].add(ip)
            self.asns[asn] += n
            self.asn_ips[asn].add(ip)
            self.asn_org.setdefault(asn, aso)
            self.orgs[aso] += n
            self.org_ips[aso].add(ip)
            if n > best.get(ip, (0, "", ""))[0]:
                best[ip] = (n, cc, asn)
        self.ip_cc = {ip: cc for ip, (_, cc, _) in best.items()}
        self.ip_asn = {ip: asn for ip, (_, _, asn) in best.items()}
        # The top list is by (user, IP): Postfix writes hostname "unknown" where it found
        # no name and Dovecot none at all, so the same attack came in as two entries. The
        # pair shows a real name when any of its rows had one, else "unknown", else blank;
        # the most failures decide between names, and between countries.
        self.pairs: Counter[tuple[str, str]] = Counter()
        pair_best: dict[tuple[str, str], tuple[int, int, str]] = {}
        pair_cc: dict[tuple[str, str], tuple[int, str]] = {}
        for (user, ip, host, cc), n in self.auth.items():
            pair = (user, ip)
            self.pairs[pair] += n
            rank = 0 if not host else 1 if host == "unknown" else 2
            if (rank, n) > pair_best.get(pair, (-1, 0, ""))[:2]:
                pair_best[pair] = (rank, n, host)
            if n > pair_cc.get(pair, (0, ""))[0]:
                pair_cc[pair] = (n, cc)
        self.pair_host = {pair: host for pair, (_, _, host) in pair_best.items()}
        self.pair_cc = {pair: cc for pair, (_, cc) in pair_cc.items()}

    def figures(self, n: int, past: Mapping[date, DaySummary | None]) -> DayFigures:
        """The day's figures, each list cut to `n` (`derive` first); `past` are the days
        before (None: not known), whose IPs decide which of the day's are new."""
        known = [s.ips for _, s in sorted(((d, s) for d, s in past.items() if s), reverse=True)]

        def seen(ip: str) -> bool:
            return any(ip in ips for ips in known)

        nets: Counter[str] = Counter()
        net_ips: defaultdict[str, set[str]] = defaultdict(set)
        for ip, c in self.ips.items():
            net = network(ip)
            nets[net] += c
            net_ips[net].add(ip)
        spread = Counter({u: len(s) for u, s in self.user_ips.items() if len(s) >= MANY_IPS})
        new = Counter({ip: c for ip, c in self.ips.items() if known and not seen(ip)})
        new_failures = sum(new.values())

        def groups(
            counter: Counter[str],
            sets: Mapping[str, set[str]],
            label: Mapping[str, str] | None = None,
        ) -> Ranked[Group]:
            top, rest, value = _ranked(counter, n)
            labels = label or {}
            return Ranked(
                [Group(k, c, len(sets[k]), labels.get(k, "")) for k, c in top], rest, value
            )

        def ranked(counter: Counter[str]) -> Ranked[tuple[str, int]]:
            top, rest, value = _ranked(counter, n)
            return Ranked(top, rest, value)

        pairs, p_rest, p_value = _ranked(self.pairs, n)
        ips, i_rest, i_value = _ranked(self.ips, n)
        wide, w_rest, w_value = _ranked(spread, n)
        top_new, n_rest, n_value = _ranked(new, n)
        return DayFigures(
            events=self.events,
            failures=self.failures,
            ips=len(self.ips),
            users=len(self.users),
            histogram=list(self.histogram),
            services=ranked(self.services),
            rdns=ranked(self.rdns),
            pairs=Ranked(
                [
                    Pair(u, ip, c, self.pair_host[u, ip], self.pair_cc[u, ip])
                    for (u, ip), c in pairs
                ],
                p_rest,
                p_value,
            ),
            addresses=Ranked(
                [
                    Address(
                        ip,
                        c,
                        len(self.ip_users[ip]),
                        self.ip_cc[ip],
                        self.ip_asn[ip],
                        self.ip_first[ip],
                        self.ip_last[ip],
                        seen(ip) if known else None,
                    )
                    for ip, c in ips
                ],
                i_rest,
                i_value,
            ),
            networks=groups(nets, net_ips),
            usernames=groups(self.users, self.user_ips),
            spread=Ranked(
                [
                    Spread(u, k, self.users[u], len({self.ip_cc[ip] for ip in self.user_ips[u]}))
                    for u, k in wide
                ],
                w_rest,
                w_value,
            ),
            countries=groups(self.countries, self.country_ips),
            asns=groups(self.asns, self.asn_ips, self.asn_org),
            orgs=groups(self.orgs, self.org_ips),
            newcomers=Newcomers(
                known_days=len(known),
                new=len(new),
                new_failures=new_failures,
                seen=len(self.ips) - len(new),
                seen_failures=self.failures - new_failures,
                top=Ranked(
                    [NewAddress(ip, c, self.ip_cc[ip], self.ip_asn[ip]) for ip, c in top_new],
                    n_rest,
                    n_value,
                ),
            ),
        )


def _ranked(counter: Counter[K], n: int) -> tuple[list[tuple[K, int]], int, int]:
    """The n largest (ties broken by key, so a report is reproducible), and how many
    entries and how much of the total the cut left out."""
    top = nsmallest(n, counter.items(), key=lambda kv: (-kv[1], kv[0]))
    rest = len(counter) - len(top)
    if rest <= 0:
        return top, 0, 0
    return top, rest, sum(counter.values()) - sum(v for _, v in top)
