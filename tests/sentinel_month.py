"""A synthetic month of a small mail server, seeded, with planted compromises and look-alikes.

40 users each have a home (a fixed IP in their country's home ISP) and a phone (a
changing IP in a mobile ISP of the same country); they log in from both every day and send
a little mail. In the background, attackers spray passwords from hundreds of IPs, mostly
at usernames that do not exist and now and then at real ones. On top of that, `month`
plants what the sentinel must see (one compromise per rule) and what it must not
mistake for one (a traveller, a VPN, a newcomer, a typo, a bulk sender), and returns each
plant with the rules it expects beside it: the data and its expectation, side by side.

Everything is derived from the seed: the same seed gives the same month.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from mlsd.alerts import Observation, Rule
from mlsd.config import SentinelConfig
from mlsd.logins import Kind

START: Final = datetime(2026, 10, 1, tzinfo=UTC)
DAYS: Final = 30
USERS: Final = 40
VPN_NET: Final = "198.51.100.0/24"
SERVICE: Final = "mailer@example.org"
CONFIG: Final = SentinelConfig(ignore_networks=(VPN_NET,), ignore_users=(SERVICE,))
"""The defaults, plus the allow-lists the look-alikes need."""

# country: (home ISP, mobile ISP), each (ASN, organisation)
ISPS: Final = {
    "FR": (("AS3215", "Orange"), ("AS51207", "Free Mobile")),
    "DE": (("AS3320", "Deutsche Telekom"), ("AS6805", "Telefonica Germany")),
    "NL": (("AS1136", "KPN"), ("AS33915", "Vodafone Libertel")),
    "BE": (("AS5432", "Proximus"), ("AS6848", "Telenet")),
    "IT": (("AS3269", "Telecom Italia"), ("AS30722", "Vodafone Italia")),
}
ATTACKERS: Final = (
    ("CN", "AS4134", "Chinanet"),
    ("RU", "AS12389", "Rostelecom"),
    ("BR", "AS28573", "Claro"),
    ("VN", "AS7552", "Viettel"),
    ("US", "AS14061", "DigitalOcean"),
)
WORDS: Final = ("admin", "info", "test", "sales", "contact", "support", "office", "web")


@dataclass(frozen=True, slots=True, kw_only=True)
class Plant:
    """Something planted in the month, and what the sentinel must say about it."""

    name: str
    user: str
    day: int
    """The day (0-based from START) it happens; its alerts carry that day's date."""
    expect: frozenset[Rule]
    """Rules that must alert for `user`, once each; empty for a look-alike: no alert."""


@dataclass(frozen=True, slots=True)
class Month:
    """The observations in log order, the plants, and the configuration they assume."""

    observations: list[Observation]
    plants: tuple[Plant, ...]
    config: SentinelConfig = CONFIG


@dataclass(frozen=True, slots=True)
class Person:
    name: str
    country: str
    home_ip: str
    phone_ips: tuple[str, ...]


class _Builder:
    """Collects events with a sequence number so equal times keep their planted order."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.events: list[tuple[datetime, int, Observation]] = []

    def add(self, ob: Observation) -> None:
        self.events.append((ob.time, len(self.events), ob))

    def login(self, time: datetime, user: str, ip: str, country: str, isp: tuple[str, str]) -> None:
        service = self.rng.choice(("imap", "imap", "submission", "pop3"))
        self.add(
            Observation(
                time,
                Kind.LOGIN,
                user,
                ip,
                server="mx1",
                service=service,
                country=country,
                asn=isp[0],
                aso=isp[1],
            )
        )

    def fail(self, time: datetime, user: str, ip: str, country: str = "CN") -> None:
        attacker = next(a for a in ATTACKERS if a[0] == country) if country else ATTACKERS[0]
        attempts = self.rng.choice((1, 1, 1, 2, 3))
        self.add(
            Observation(
                time,
                Kind.FAILURE,
                user,
                ip,
                server="mx1",
                service="smtp",
                country=attacker[0],
                asn=attacker[1],
                aso=attacker[2],
                attempts=attempts,
            )
        )

    def submit(self, time: datetime, user: str, ip: str, recipients: int) -> None:
        self.add(
            Observation(
                time,
                Kind.SUBMIT,
                user,
                ip,
                server="mx1",
                service="submission",
                recipients=recipients,
            )
        )

    def ordered(self) -> list[Observation]:
        return [ob for _, _, ob in sorted(self.events, key=lambda e: (e[0], e[1]))]


def _at(day: int, hour: float) -> datetime:
    return START + timedelta(days=day, hours=hour)


def _people(rng: random.Random) -> list[Person]:
    people = []
    for k in range(USERS):
        country = rng.choice(sorted(ISPS))
        home = f"81.{k}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        phones = tuple(f"37.{k}.{rng.randrange(256)}.{j + 1}" for j in range(20))
        people.append(Person(f"user{k:02d}@example.org", country, home, phones))
    return people


def _daily_life(b: _Builder, person: Person, day: int) -> None:
    """Home and phone logins (both every day, so both places stay known), a little mail."""
    rng = b.rng
    home, mobile = ISPS[person.country]
    for _ in range(rng.randint(1, 3)):
        b.login(_at(day, rng.uniform(7, 22)), person.name, person.home_ip, person.country, home)
    for ip in rng.sample(person.phone_ips, rng.randint(1, 2)):
        b.login(_at(day, rng.uniform(7, 22)), person.name, ip, person.country, mobile)
    for _ in range(rng.randint(0, 6)):
        b.submit(_at(day, rng.uniform(8, 19)), person.name, person.home_ip, rng.randint(1, 5))


def _background(b: _Builder, people: list[Person], day: int) -> None:
    """Password spraying: attacker IPs try made-up names, and each real user twice a day
    at most (so no real user nears `failures` in an hour by chance)."""
    rng = b.rng
    ips = [
        f"185.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}" for _ in range(60)
    ]
    for _ in range(1500):
        name = f"{rng.choice(WORDS)}{rng.randrange(100)}@example.org"
        b.fail(_at(day, rng.uniform(0, 24)), name, rng.choice(ips), rng.choice(ATTACKERS)[0])
    for person in people:
        for _ in range(rng.randint(0, 2)):
            b.fail(_at(day, rng.uniform(0, 24)), person.name, rng.choice(ips))


def _compromises(b: _Builder, who: list[Person], days: list[int]) -> list[Plant]:
    """One planted compromise per rule, each on a user with more than a week of history."""
    rng = b.rng
    plants = []

    # Distributed guessing: 12 IPs, one failure each, then a login from the victim's own
    # ISP (a hijacked home router nearby): only the failures give it away.
    victim, day = who[0], days[0]
    t = _at(day, rng.uniform(8, 18))
    for i in range(12):
        b.fail(
            t + timedelta(minutes=3 * i),
            victim.name,
            f"91.12.{i}.{rng.randrange(1, 255)}",
            ATTACKERS[i % len(ATTACKERS)][0],
        )
    home = ISPS[victim.country][0]
    b.login(t + timedelta(minutes=40), victim.name, "81.250.1.1", victim.country, home)
    plants.append(
        Plant(
            name="distributed guessing, then a login",
            user=victim.name,
            day=day,
            expect=frozenset({Rule.SUCCESS_AFTER_FAILURES}),
        )
    )

    # One IP sprays 15 users (real and made up) and gets in as the victim, from abroad.
    victim, day = who[1], days[1]
    t = _at(day, rng.uniform(8, 18))
    names = [f"user{k:02d}@example.org" for k in range(0, USERS, 6)]
    names += [f"{w}@example.org" for w in WORDS]
    for i, name in enumerate(names[:15]):
        b.fail(t + timedelta(minutes=2 * i), name, "91.200.7.7", "RU")
    b.login(t + timedelta(minutes=35), victim.name, "91.200.7.7", "RU", ("AS12389", "Rostelecom"))
    plants.append(
        Plant(
            name="an IP that failed for many users logs in",
            user=victim.name,
            day=day,
            expect=frozenset({Rule.SUCCESS_AFTER_FAILURES, Rule.NEW_COUNTRY, Rule.NEW_NETWORK}),
        )
    )

    # A leaked password used from a new country (and so a new network).
    victim, day = who[2], days[2]
    b.login(_at(day, rng.uniform(1, 5)), victim.name, "91.66.6.6", "SE", ("AS1257", "Tele2"))
    plants.append(
        Plant(
            name="a login from a new country",
            user=victim.name,
            day=day,
            expect=frozenset({Rule.NEW_COUNTRY, Rule.NEW_NETWORK}),
        )
    )

    # A login from a hosting provider in the user's own country.
    victim, day = who[3], days[3]
    b.login(
        _at(day, rng.uniform(1, 5)), victim.name, "91.77.7.7", victim.country, ("AS16276", "OVH")
    )
    plants.append(
        Plant(
            name="a login from a new network",
            user=victim.name,
            day=day,
            expect=frozenset({Rule.NEW_NETWORK}),
        )
    )

    # A botnet of home routers in the victim's own ISP: 12 IPs in two hours.
    victim, day = who[4], days[4]
    t = _at(day, rng.uniform(6, 18))
    for i in range(12):
        b.login(
            t + timedelta(minutes=10 * i),
            victim.name,
            f"81.251.{i}.{rng.randrange(1, 255)}",
            victim.country,
            ISPS[victim.country][0],
        )
    plants.append(
        Plant(
            name="many sources in a day",
            user=victim.name,
            day=day,
            expect=frozenset({Rule.MANY_SOURCES}),
        )
    )

    # Spam through the account: 640 recipients within one clock hour.
    victim, day = who[5], days[5]
    t = _at(day, rng.randrange(8, 18) + 0.05)
    for i in range(40):
        b.submit(t + timedelta(minutes=i), victim.name, victim.home_ip, 16)
    plants.append(
        Plant(name="a send burst", user=victim.name, day=day, expect=frozenset({Rule.SEND_BURST}))
    )
    return plants


def _look_alikes(b: _Builder, who: list[Person], days: list[int]) -> list[Plant]:
    """Benign events that resemble a compromise: none may alert."""
    rng = b.rng
    plants = []
    none: frozenset[Rule] = frozenset()

    # A traveller: Spain on days 2-4 (too early to judge), Spain again later (now known).
    traveller, day = who[0], days[0]
    spain = ("AS3352", "Telefonica de Espana")
    for d in (2, 3, 4, day):
        b.login(_at(d, rng.uniform(19, 22)), traveller.name, "88.0.3.3", "ES", spain)
    plants.append(
        Plant(
            name="a traveller back in a country seen this month",
            user=traveller.name,
            day=day,
            expect=none,
        )
    )

    # A VPN on the allow-list (its exit is abroad, on a network nobody else uses).
    user, day = who[1], days[1]
    for i in range(3):
        b.login(_at(day, 9 + i), user.name, f"198.51.100.{10 + i}", "US", ("AS9009", "M247"))
    plants.append(
        Plant(name="a login through the allow-listed VPN", user=user.name, day=day, expect=none)
    )

    # A new colleague, first seen late in the month, logging in from two countries.
    day = days[2]
    for d, country, isp in ((day, "BR", ("AS28573", "Claro")), (day + 1, "PT", ("AS3243", "MEO"))):
        for i in range(3):
            b.login(_at(d, 9 + 3 * i), "newbie@example.org", f"89.1.{d}.{i + 1}", country, isp)
    plants.append(
        Plant(
            name="a brand-new user with no history", user="newbie@example.org", day=day, expect=none
        )
    )

    # Three typos, then the right password, from home.
    user, day = who[3], days[3]
    t = _at(day, rng.uniform(8, 18))
    for i in range(3):
        b.add(
            Observation(
                t + timedelta(seconds=20 * i),
                Kind.FAILURE,
                user.name,
                user.home_ip,
                server="mx1",
                service="imap",
                country=user.country,
            )
        )
    b.login(t + timedelta(minutes=1), user.name, user.home_ip, user.country, ISPS[user.country][0])
    plants.append(Plant(name="three typos, then a login", user=user.name, day=day, expect=none))

    # A service account on the allow-list sending a lot, every day and far more one day.
    dc = ("AS16276", "OVH")
    for d in range(DAYS):
        b.login(_at(d, 6), SERVICE, "51.68.0.1", "FR", dc)
        recipients = 2_000 if d == days[4] else 40
        for i in range(20):
            b.submit(_at(d, 6.1 + i / 60), SERVICE, "51.68.0.1", recipients // 20)
    plants.append(
        Plant(
            name="an allow-listed service account's burst", user=SERVICE, day=days[4], expect=none
        )
    )

    # A newsletter sender: 150 recipients in an hour weekly, then 400 (under 5x its high).
    user, day = who[5], days[5]
    for d in (1, 8, 15, day):
        total = 400 if d == day else 150
        for i in range(10):
            b.submit(_at(d, 14 + i / 60), user.name, user.home_ip, total // 10)
    plants.append(
        Plant(name="a bulk sender within its own habit", user=user.name, day=day, expect=none)
    )
    return plants


def month(seed: int) -> Month:
    """The month for `seed`: observations in log order, plants with their expectations."""
    rng = random.Random(seed)
    b = _Builder(rng)
    people = _people(rng)
    for day in range(DAYS):
        for person in people:
            _daily_life(b, person, day)
        _background(b, people, day)
    chosen = rng.sample(people, 12)
    days = [rng.randrange(20, DAYS - 2) for _ in range(6)]
    plants = _compromises(b, chosen[:6], days) + _look_alikes(b, chosen[6:], days)
    return Month(b.ordered(), tuple(plants))
