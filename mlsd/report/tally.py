"""Counting the window's rows, once, into the counters every section of the report derives
from.

Counts: "failures" are failed attempts, the sum of the `attempts` column (Dovecot folds
several into one row); "events" are rows. Every top list, histogram and comparison counts
failures.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from collections.abc import Iterable

from mlsd.rows import Column, attempts_of


def network(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) an IP belongs to; the text itself if it is not an IP.

    By hand rather than with `ipaddress.ip_network`, which costs ~20 µs an address (a busy
    day has tens of thousands): a.b.c.d → a.b.c.0/24, and for IPv6 the first three hextets,
    written as RFC 5952 does (the five zero hextets after them are always the run `::` takes).
    """
    if ":" not in ip:
        head, _, last = ip.rpartition(".")
        if head.count(".") == 2 and (head + last).replace(".", "").isdigit():
            return f"{head}.0/24"
        return ip
    try:
        packed = ipaddress.IPv6Address(ip).packed
    except ValueError:
        return ip
    hextets = [packed[k] << 8 | packed[k + 1] for k in (0, 2, 4)]
    while hextets and hextets[-1] == 0:
        hextets.pop()
    return ":".join(f"{h:x}" for h in hextets) + "::/48"


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
