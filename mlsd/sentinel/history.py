"""Each user's own recent past: where they log in from, how much they send, today's sources.

new_country / new_network compare a login with the user's countries and networks of the
last `history_days`; send_burst with their highest hour of the same span; many_sources
with the IPs and countries of the current day. Everything here is a function of the last
`history_days` of the user's logins and submissions (nothing older is kept or needed), so
`Sentinel.warm` can rebuild it from that span of the logins CSV and reach the same state a
daemon that never stopped would have.

Days and hours are cut in UTC: a "day" for many_sources and the day buckets of the history
are UTC calendar days, an "hour" for send_burst is a UTC clock hour.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from mlsd.rows import NOT_AVAILABLE

DAY = 86_400.0
HOUR = 3_600.0


def day_of(time: float) -> int:
    """The UTC calendar day a POSIX time falls in (days since the epoch)."""
    return int(time // DAY)


def _remember(seen: dict[str, float], key: str, time: float, cap: int) -> None:
    """Note `key` seen at `time`, keeping dict order = recency so the stalest goes first."""
    last = seen.pop(key, time)
    seen[key] = max(last, time)
    if len(seen) > cap:
        del seen[next(iter(seen))]


def _forget_before(seen: dict[str, float], cutoff: float) -> None:
    for key in [k for k, last in seen.items() if last <= cutoff]:
        del seen[key]


class DayCount:
    """Logins of one UTC day: how many, and the first one's time (for "first seen")."""

    __slots__ = ("count", "day", "first")

    def __init__(self, day: int, first: float) -> None:
        self.day = day
        self.count = 0
        self.first = first


class UserHistory:
    """One user's logins (per day), places (last seen), today's sources and sending."""

    __slots__ = (
        "countries",
        "day_countries",
        "day_extra",
        "day_fired",
        "day_ips",
        "days",
        "highs",
        "hour",
        "hour_fired",
        "hour_messages",
        "hour_sum",
        "ips",
        "network_names",
        "networks",
        "seen",
        "today",
    )

    def __init__(self) -> None:
        self.seen = float("-inf")
        """Last login or submission: the LRU and expiry order."""
        self.days: deque[DayCount] = deque()
        self.countries: dict[str, float] = {}
        self.networks: dict[str, float] = {}
        self.network_names: dict[str, str] = {}
        """ASN -> organisation, for the evidence (same keys as `networks`)."""
        self.ips: dict[str, float] = {}
        self.today = -1
        self.day_ips: set[str] = set()
        self.day_extra = 0
        self.day_countries: set[str] = set()
        self.day_fired = False
        self.hour = -1
        self.hour_sum = 0
        self.hour_messages = 0
        self.hour_fired = False
        self.highs: deque[list[int]] = deque()
        """[day, recipients of the day's highest finished hour], oldest first."""

    def size(self) -> int:
        """Items held: day buckets, places, today's sources, hourly highs."""
        return (
            len(self.days)
            + len(self.countries)
            + len(self.networks)
            + len(self.network_names)
            + len(self.ips)
            + len(self.day_ips)
            + len(self.day_countries)
            + len(self.highs)
        )

    # -- the history window ----------------------------------------------------------

    def prune(self, now: float, history_days: int) -> None:
        """Forget what is older than `history_days` before `now`."""
        cutoff = now - history_days * DAY
        first_day = day_of(cutoff)
        while self.days and self.days[0].day < first_day:
            self.days.popleft()
        while self.highs and self.highs[0][0] < first_day:
            self.highs.popleft()
        _forget_before(self.countries, cutoff)
        _forget_before(self.networks, cutoff)
        for asn in [a for a in self.network_names if a not in self.networks]:
            del self.network_names[asn]
        _forget_before(self.ips, cutoff)

    def logins(self) -> int:
        """Logins held (those of the last `history_days`, once pruned)."""
        return sum(d.count for d in self.days)

    def first_seen(self) -> float | None:
        """The oldest login held: when the user was first seen within the window."""
        return self.days[0].first if self.days else None

    def judged(self, now: float, min_days: int, min_logins: int) -> bool:
        """Whether there is enough history to call a country or network new: a user first
        seen under `min_days` ago (a new account, or mlsd just installed) or with fewer
        than `min_logins` logins is not judged, whatever they do."""
        first = self.first_seen()
        if first is None:
            return False
        return now - first >= min_days * DAY and self.logins() >= min_logins

    def learn(
        self, now: float, ip: str, country: str, asn: str, aso: str, *, places: bool, cap: int
    ) -> None:
        """Add a login; `places=False` counts it without learning where it came from."""
        self.seen = max(self.seen, now)
        day = day_of(now)
        if not self.days or self.days[-1].day < day:
            self.days.append(DayCount(day, now))
        bucket = self.days[-1] if self.days[-1].day == day else self._bucket(day, now)
        bucket.count += 1
        bucket.first = min(bucket.first, now)
        if not places:
            return
        if country != NOT_AVAILABLE:
            _remember(self.countries, country, now, cap)
        if asn != NOT_AVAILABLE:
            _remember(self.networks, asn, now, cap)
            self.network_names[asn] = aso
            for stale in [a for a in self.network_names if a not in self.networks]:
                del self.network_names[stale]
        if ip:
            _remember(self.ips, ip, now, cap)

    def _bucket(self, day: int, now: float) -> DayCount:
        """The bucket of an earlier day (a line out of log order): rare, linear is fine."""
        for bucket in self.days:
            if bucket.day == day:
                return bucket
        # Older than every bucket held: count it in the oldest, no new "first seen".
        return self.days[0]

    # -- many_sources ------------------------------------------------------------------

    def sources(self, now: float, ip: str, country: str, cap: int) -> tuple[int, int] | None:
        """Add a login to today's sources; (distinct IPs, distinct countries) today, or
        None for a login of an earlier day arriving late (it cannot cross today's count)."""
        day = day_of(now)
        if day < self.today:
            return None
        if day > self.today:
            self.today = day
            self.day_ips = set()
            self.day_extra = 0
            self.day_countries = set()
            self.day_fired = False
        if ip and ip not in self.day_ips:
            if len(self.day_ips) < cap:
                self.day_ips.add(ip)
            else:
                self.day_extra += 1
        if country != NOT_AVAILABLE:
            self.day_countries.add(country)
        return len(self.day_ips) + self.day_extra, len(self.day_countries)

    # -- send_burst --------------------------------------------------------------------

    def submit(self, now: float, recipients: int) -> bool:
        """Add a submission; False when it belongs to an earlier hour (counted, not judged)."""
        self.seen = max(self.seen, now)
        hour = int(now // HOUR)
        if hour < self.hour:
            self._high(int(hour * HOUR // DAY), recipients)
            return False
        if hour > self.hour:
            if self.hour >= 0:
                self._high(int(self.hour * HOUR // DAY), self.hour_sum)
            self.hour = hour
            self.hour_sum = 0
            self.hour_messages = 0
            self.hour_fired = False
        self.hour_sum += max(0, recipients)
        self.hour_messages += 1
        return True

    def high(self) -> tuple[int, int | None]:
        """(recipients, day) of the highest finished hour held; (0, None) without any."""
        best, when = 0, None
        for day, value in self.highs:
            if value > best:
                best, when = value, day
        return best, when

    def _high(self, day: int, value: int) -> None:
        for entry in reversed(self.highs):
            if entry[0] == day:
                entry[1] = max(entry[1], value)
                return
            if entry[0] < day:
                break
        self.highs.append([day, value])
        # An hour arriving out of order is rare; keep the days sorted for `prune`.
        if len(self.highs) > 1 and self.highs[-2][0] > day:
            self.highs = deque(sorted(self.highs))


class Histories:
    """The users' histories: an LRU map capped at `cap` users, expired by log time."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._users: OrderedDict[str, UserHistory] = OrderedDict()

    def __len__(self) -> int:
        return len(self._users)

    def largest(self) -> int:
        """The most items one user's history holds (for the bounded-memory tests)."""
        return max((h.size() for h in self._users.values()), default=0)

    def get(self, user: str) -> UserHistory | None:
        """The user's history, if any (no LRU touch: reading is not activity)."""
        return self._users.get(user)

    def touch(self, user: str) -> UserHistory:
        """The user's history, created if needed, marked most recently active."""
        found = self._users.get(user)
        if found is None:
            found = self._users[user] = UserHistory()
            if len(self._users) > self._cap:
                self._users.popitem(last=False)
        else:
            self._users.move_to_end(user)
        return found

    def expire(self, now: float, history_days: int) -> None:
        """Forget users with no login or submission within `history_days`."""
        cutoff = now - history_days * DAY
        while self._users:
            user, history = next(iter(self._users.items()))
            if history.seen > cutoff:
                break
            del self._users[user]
