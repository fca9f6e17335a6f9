"""The sentinel's rules one by one, at their thresholds' edges: N-1 stays quiet, N fires.

Each test feeds a real `Sentinel` observations in log order and compares the alerts it
raises (rule, user, headline, and the evidence an admin reads) with what the rule's
documented semantics (mlsd.config.schema.SentinelConfig) say.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from mlsd.alerts import Alert, Observation, Rule
from mlsd.config import SentinelConfig
from mlsd.logins import Kind
from mlsd.sentinel.caps import Caps
from mlsd.sentinel.engine import Sentinel, warm_window
from mlsd.sentinel.windows import MAX_NAME, Entry, FailureIndex

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
CFG = SentinelConfig()


def at(minutes: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, days=days)


def fail(time: datetime, user: str, ip: str, attempts: int = 1) -> Observation:
    return Observation(time, Kind.FAILURE, user, ip, server="mx1", attempts=attempts)


def login(
    time: datetime, user: str, ip: str, country: str = "FR", asn: str = "AS3215"
) -> Observation:
    return Observation(
        time,
        Kind.LOGIN,
        user,
        ip,
        server="mx1",
        service="imap",
        country=country,
        asn=asn,
        aso="Orange",
    )


def submit(time: datetime, user: str, recipients: int, ip: str = "192.0.2.10") -> Observation:
    return Observation(time, Kind.SUBMIT, user, ip, server="mx1", recipients=recipients)


def run(batch: Sequence[Observation], cfg: SentinelConfig = CFG) -> list[Alert]:
    return Sentinel(cfg).observe(batch)


def rules_of(alerts: Sequence[Alert]) -> list[tuple[str, Rule, str]]:
    return [(a.user, a.rule, a.headline) for a in alerts]


def habit(user: str, days: int = 10, per_day: int = 1) -> list[Observation]:
    """`user` logging in from home (FR, AS3215) once a day for `days` days before T0."""
    return [
        login(at(minutes=i * 7, days=-days + d), user, "192.0.2.1")
        for d in range(days)
        for i in range(per_day)
    ]


# -- success_after_failures ---------------------------------------------------------------


def test_distributed_failures_for_a_user_then_a_login() -> None:
    """`failures` failures for the user from any IPs, then a login: fires; one less: not."""
    n = CFG.failures
    guesses = [fail(at(i), "alice", f"203.0.113.{i}") for i in range(n)]
    assert [] == run([*guesses[1:], login(at(30), "alice", "198.51.100.7")])
    alerts = run([*guesses, login(at(30), "alice", "198.51.100.7")])
    assert [("alice", Rule.SUCCESS_AFTER_FAILURES, f"{n} failures then a login")] == rules_of(
        alerts
    )
    evidence = dict(alerts[0].evidence)
    assert evidence["from IPs"].startswith(f"{n} distinct: 203.0.113.0 (1), 203.0.113.1 (1)")
    assert evidence["from IPs"].endswith(f"+{n - 5} more")
    assert evidence["failures, this user"] == (
        f"{n}, first 2026-11-02 08:00:00 UTC, last 2026-11-02 08:{n - 1:02d}:00 UTC (in 60 min)"
    )
    assert (("failures", "10"), ("failure_window", "60")) == alerts[0].thresholds
    assert ("198.51.100.7", "mx1", "FR", "AS3215") == (
        alerts[0].ip,
        alerts[0].server,
        alerts[0].country,
        alerts[0].asn,
    )


def test_an_ip_that_failed_for_many_users_then_logs_in() -> None:
    """`failures` failures from one IP (any users), then a login from it: fires."""
    n = CFG.failures
    spray = [fail(at(i), f"user{i}", "203.0.113.9") for i in range(n)]
    assert [] == run([*spray[1:], login(at(20), "bob", "203.0.113.9")])
    alerts = run([*spray, login(at(20), "bob", "203.0.113.9")])
    assert [
        ("bob", Rule.SUCCESS_AFTER_FAILURES, f"{n} failures from 203.0.113.9 then a login")
    ] == rules_of(alerts)
    evidence = dict(alerts[0].evidence)
    assert evidence["users tried from that IP"].startswith(f"{n} distinct: user0 (1), user1 (1)")
    assert "none" == evidence["failures, this user"]


def test_failures_weigh_their_attempts() -> None:
    """A Dovecot line `auth failed, 10 attempts` counts as 10 failures."""
    alerts = run([fail(at(0), "carol", "203.0.113.1", attempts=10), login(at(1), "carol", "x")])
    assert [("carol", Rule.SUCCESS_AFTER_FAILURES, "10 failures then a login")] == rules_of(alerts)
    assert [] == run([fail(at(0), "carol", "203.0.113.1", attempts=9), login(at(1), "carol", "x")])


def test_failures_older_than_the_window_do_not_count() -> None:
    """The window is (login - failure_window, login]: a failure exactly W old is out."""
    old = fail(at(0), "dave", "203.0.113.1")
    recent = [fail(at(10 + i), "dave", "203.0.113.2") for i in range(CFG.failures - 1)]
    assert [] == run([old, *recent, login(at(60), "dave", "192.0.2.1")])
    alerts = run([old, *recent, login(at(59.9), "dave", "192.0.2.1")])
    assert [Rule.SUCCESS_AFTER_FAILURES] == [a.rule for a in alerts]


def test_failures_zero_turns_the_rule_off() -> None:
    """`failures = 0`: no success_after_failures whatever the failures."""
    cfg = replace(CFG, failures=0)
    batch = [fail(at(0), "erin", "203.0.113.1", attempts=50), login(at(1), "erin", "x")]
    assert [] == run(batch, cfg)


def test_a_hammered_key_counts_past_its_exact_entries() -> None:
    """Past `per_key` exact entries the older failures fold into slices: a threshold far
    above the cap still fires, and the count shown never exceeds the truth."""
    cfg = replace(CFG, failures=300)
    sentinel = Sentinel(cfg, Caps(per_key=8, slices=16))
    guesses = [fail(at(i * 0.1), "frank", f"203.0.113.{i % 200}") for i in range(300)]
    alerts = sentinel.observe([*guesses, login(at(30), "frank", "192.0.2.1")])
    assert ["300 failures then a login"] == [a.headline for a in alerts]
    assert sentinel.sizes()["largest_failure_key"] <= 8 + 17
    cut = Sentinel(replace(CFG, failures=300), Caps(per_key=8, slices=16))
    assert [] == cut.observe([*guesses[1:], login(at(30), "frank", "192.0.2.1")])


# -- new_country / new_network ------------------------------------------------------------


def test_new_country_after_enough_history() -> None:
    """Enough history (first login >= 7 days old, >= 5 logins): a new country fires,
    with the usual ones and when they were last seen."""
    alerts = run([*habit("gina", days=8), login(at(0), "gina", "203.0.113.5", "SE", "AS3215")])
    assert [("gina", Rule.NEW_COUNTRY, "new country SE")] == rules_of(alerts)
    evidence = dict(alerts[0].evidence)
    assert "SE" == evidence["new country"]
    assert "FR (last seen 2026-11-01 08:00:00 UTC)" == evidence["usual countries"]
    assert "AS3215 Orange (last seen 2026-11-01 08:00:00 UTC)" == evidence["usual networks"]
    assert "8 logins since 2026-10-25 08:00:00 UTC" == evidence["history"]
    assert ("min_history_days", "7") in alerts[0].thresholds


def test_new_country_edges_of_enough_history() -> None:
    """min_history_logins - 1 logins, or a first login just under 7 days old: not judged."""
    newcomer = login(at(0), "hal", "203.0.113.5", "SE")
    five = habit("hal", days=7)[:5]  # first at T0 - 7 days: exactly old enough
    assert [Rule.NEW_COUNTRY] == [a.rule for a in run([*five, newcomer])]
    assert [] == run([*five[:4], newcomer])
    young = [o._replace(time=o.time + timedelta(seconds=1)) for o in five]
    assert [] == run([*young, newcomer])


def test_a_known_country_or_na_is_never_new() -> None:
    """A country in the user's history, or an unknown one (N/A), is not new."""
    back = login(at(0), "ivy", "203.0.113.5", "FR", "AS3215")
    unknown = login(at(1), "ivy", "203.0.113.6", "N/A", "N/A")
    assert [] == run([*habit("ivy"), back, unknown])


def test_history_older_than_history_days_is_forgotten() -> None:
    """A country last seen more than `history_days` ago is new again."""
    old_trip = login(at(0, days=-40), "jon", "203.0.113.5", "SE", "AS3215")
    alerts = run([old_trip, *habit("jon"), login(at(0), "jon", "203.0.113.5", "SE", "AS3215")])
    assert [Rule.NEW_COUNTRY] == [a.rule for a in alerts]


def test_new_network() -> None:
    """A new ASN in a usual country: new_network only, naming the network."""
    alerts = run([*habit("kim"), login(at(0), "kim", "203.0.113.5", "FR", "AS12322")])
    assert [("kim", Rule.NEW_NETWORK, "new network AS12322")] == rules_of(alerts)
    assert "AS12322 Orange" == dict(alerts[0].evidence)["new network"]
    off = replace(CFG, new_network=False, new_country=False)
    trip = login(at(0), "kim", "203.0.113.5", "SE", "AS12322")
    assert [] == run([*habit("kim"), trip], off)


# -- many_sources ------------------------------------------------------------------------


def test_many_ips_in_a_day_fires_once_when_crossing() -> None:
    """The max_ips-th distinct IP of a UTC day fires; the next ones do not."""
    n = CFG.max_ips
    day = [login(at(i), "lea", f"198.51.100.{i}") for i in range(n + 3)]
    assert [] == run(day[: n - 1])
    alerts = run(day)
    assert [("lea", Rule.MANY_SOURCES, f"{n} IPs in a day")] == rules_of(alerts)
    assert day[n - 1].time == alerts[0].time
    assert "2026-11-02" == dict(alerts[0].evidence)["day (UTC)"]


def test_many_sources_days_are_utc_calendar_days() -> None:
    """IPs on either side of 00:00 UTC are two days, each under the threshold."""
    n = CFG.max_ips
    midnight = datetime(2026, 11, 3, tzinfo=UTC)
    late = [login(midnight - timedelta(minutes=i + 1), "mo", f"198.51.100.{i}") for i in range(5)]
    early = [login(midnight + timedelta(minutes=i), "mo", f"198.51.101.{i}") for i in range(5)]
    assert 10 == n
    assert [] == run([*reversed(late), *early])


def test_many_countries_in_a_day() -> None:
    """max_countries distinct countries in a day fires (N/A does not count)."""
    trip = [
        login(at(0), "ned", "198.51.100.1", "FR"),
        login(at(1), "ned", "198.51.100.2", "N/A"),
        login(at(2), "ned", "198.51.100.3", "DE"),
    ]
    assert [] == run(trip)
    alerts = run([*trip, login(at(3), "ned", "198.51.100.4", "US")])
    assert [("ned", Rule.MANY_SOURCES, "3 countries in a day")] == rules_of(alerts)
    assert "DE, FR, US" == dict(alerts[0].evidence)["countries today"]


# -- send_burst ------------------------------------------------------------------------


def test_send_burst_without_history_is_the_floor() -> None:
    """No history: above `send_floor` recipients in a clock hour fires, once per hour."""
    floor = CFG.send_floor
    assert [] == run([submit(at(0), "olga", floor // 2), submit(at(10), "olga", floor // 2)])
    alerts = run(
        [
            submit(at(0), "olga", floor // 2),
            submit(at(10), "olga", floor // 2 + 1),
            submit(at(20), "olga", 50),
        ]
    )
    assert [("olga", Rule.SEND_BURST, f"{floor + 1} recipients in an hour")] == rules_of(alerts)


def test_send_burst_against_the_users_own_high() -> None:
    """With history, the hour must also exceed send_multiple x the user's highest hour."""
    quiet = replace(CFG, quiet_minutes=0)
    past = [submit(at(0, days=-3), "pia", 100), submit(at(0, days=-2), "pia", 60)]
    high = int(CFG.send_multiple * 100)
    assert [] == run([*past, submit(at(0), "pia", high)], quiet)
    alerts = run([*past, submit(at(0), "pia", high + 1)], quiet)
    assert [f"{high + 1} recipients in an hour"] == [a.headline for a in alerts]
    assert (
        "100 recipients in an hour, on 2026-10-30"
        == dict(alerts[0].evidence)["highest hour in 30 days"]
    )


def test_send_burst_hours_are_clock_hours() -> None:
    """150 at 08:50 and 150 at 09:10 are two hours of 150, not one of 300."""
    assert [] == run([submit(at(50), "quin", 150), submit(at(70), "quin", 150)])


# -- dedup, allow-lists, warm, reconfigure -----------------------------------------------


def test_quiet_minutes_holds_back_a_repeat_of_the_same_user_and_rule() -> None:
    """A second trigger within quiet_minutes is held back; after it, it fires again."""
    guesses = [fail(at(i), "rae", "203.0.113.1") for i in range(CFG.failures)]
    again = [fail(at(70 + i), "rae", "203.0.113.1") for i in range(CFG.failures)]
    batch = [*guesses, login(at(20), "rae", "x"), *again, login(at(79), "rae", "x")]
    assert 1 == len(run(batch))
    later = [*guesses, login(at(20), "rae", "x"), *again, login(at(80), "rae", "x")]
    assert [at(20), at(80)] == [a.time for a in run(later)]
    assert 2 == len(run(batch, replace(CFG, quiet_minutes=0)))


def test_ignore_users_and_networks() -> None:
    """No alert for an ignored user, nor for a login from an ignored network."""
    guesses = [fail(at(i), "svc", "203.0.113.1") for i in range(CFG.failures)]
    cfg = replace(CFG, ignore_users=("svc",), ignore_networks=("198.51.100.0/24",))
    assert [] == run([*guesses, login(at(20), "svc", "203.0.113.1")], cfg)
    vpn = [g._replace(user="sam") for g in guesses]
    assert [] == run([*vpn, login(at(20), "sam", "198.51.100.77")], cfg)
    assert [] == run([submit(at(0), "svc", 10_000)], cfg)


def test_a_vpn_login_is_history_but_not_a_usual_place() -> None:
    """Logins through an ignored network count as history (enough logins to be judged)
    but do not make their country usual: a direct login from that country is new."""
    cfg = replace(CFG, ignore_networks=("198.51.100.0/24",))
    via_vpn = [login(at(0, days=-10 + d), "tom", "198.51.100.9", "SE", "AS1257") for d in range(10)]
    direct = login(at(0), "tom", "203.0.113.5", "SE", "AS1257")
    alerts = Sentinel(cfg).observe([*via_vpn, direct])
    assert [Rule.NEW_COUNTRY, Rule.NEW_NETWORK] == [a.rule for a in alerts]
    assert "none" == dict(alerts[0].evidence)["usual countries"]
    assert "10 logins since 2026-10-23 08:00:00 UTC" == dict(alerts[0].evidence)["history"]


def test_warm_then_replay_gives_the_same_ids() -> None:
    """warm(H) then observe(B) raises what observe(H) then observe(B) raised for B, with
    the same ids, and warm itself raises nothing."""
    history = [
        *habit("uma", days=12),
        *[fail(at(-30 + i), "uma", f"203.0.113.{i}") for i in range(8)],
    ]
    batch = [
        fail(at(-5), "uma", "203.0.113.50"),
        fail(at(-4), "uma", "203.0.113.51"),
        login(at(0), "uma", "203.0.113.50", "SE", "AS1257"),
        *[login(at(1 + i), "vic", f"198.51.100.{i}") for i in range(12)],
    ]
    live = Sentinel(CFG)
    live.observe(history)
    expected = live.observe(batch)
    assert {Rule.SUCCESS_AFTER_FAILURES, Rule.NEW_COUNTRY, Rule.NEW_NETWORK, Rule.MANY_SOURCES} == {
        a.rule for a in expected
    }
    for _ in range(2):
        restarted = Sentinel(CFG)
        restarted.warm(history)
        assert [a.to_json() for a in expected] == [a.to_json() for a in restarted.observe(batch)]


def test_warm_keeps_the_quiet_period_of_alerts_raised_before_the_restart() -> None:
    """An alert raised just before the restart is not raised again for the next trigger."""
    first = [*[fail(at(i), "wes", "203.0.113.1") for i in range(10)], login(at(11), "wes", "x")]
    second = [*[fail(at(20 + i), "wes", "203.0.113.2") for i in range(10)]]
    restarted = Sentinel(CFG)
    restarted.warm(first)
    assert [] == restarted.observe([*second, login(at(31), "wes", "x")])
    window = warm_window(CFG, at(31))
    assert at(31) - timedelta(minutes=120) == window.failures_since
    assert at(31) - timedelta(days=31, minutes=60) == window.logins_since


def test_reconfigure_applies_new_thresholds_and_lists() -> None:
    """A reload changes the thresholds from the next line on, keeping the state."""
    sentinel = Sentinel(CFG)
    sentinel.observe([fail(at(i), "xan", "203.0.113.1") for i in range(5)])
    sentinel.reconfigure(replace(CFG, failures=5))
    assert ["5 failures then a login"] == [
        a.headline for a in sentinel.observe([login(at(6), "xan", "x")])
    ]
    sentinel.reconfigure(replace(CFG, failures=5, ignore_users=("yul",)))
    spray = [fail(at(10 + i), "yul", "203.0.113.1") for i in range(5)]
    assert [] == sentinel.observe([*spray, login(at(16), "yul", "x")])


def test_naive_times_are_utc_not_the_local_zone() -> None:
    """A naive time is read as UTC, so the same lines give the same ids on any host."""
    naive = [
        o._replace(time=o.time.replace(tzinfo=None))
        for o in [fail(at(i), "zed", "203.0.113.1") for i in range(10)]
    ]
    alert = run([*naive, login(at(11).replace(tzinfo=None), "zed", "x")])[0]
    assert "10, first 2026-11-02 08:00:00 UTC" in dict(alert.evidence)["failures, this user"]


# -- bounded memory ------------------------------------------------------------------------


def test_a_million_sprayed_usernames_stay_within_the_caps() -> None:
    """1M failures, each for a new username from one of 5000 IPs: every structure stays
    under its cap, and the IP side still catches a login from a spraying IP."""
    caps = Caps(failure_keys=20_000, failure_entries=200_000, per_key=16)
    sentinel = Sentinel(CFG, caps)
    start = T0.timestamp()
    for chunk in range(100):
        batch = [
            Observation(
                datetime.fromtimestamp(start + (chunk * 10_000 + i) * 0.01, UTC),
                Kind.FAILURE,
                f"u{chunk}-{i}@example.org",
                f"2001:db8::{i % 5000:x}",
            )
            for i in range(10_000)
        ]
        sentinel.observe(batch)
        sizes = sentinel.sizes()
        assert sizes["failure_users"] <= caps.failure_keys
        assert sizes["failure_user_items"] <= caps.failure_entries
        assert sizes["failure_ips"] <= caps.failure_keys
        assert sizes["failure_ip_items"] <= caps.failure_entries
        assert sizes["largest_failure_key"] <= caps.per_key + caps.slices + 1
    assert caps.failure_keys == sentinel.sizes()["failure_users"]
    end = datetime.fromtimestamp(start + 1_000_000 * 0.01, UTC)
    alerts = sentinel.observe([login(end, "victim", "2001:db8::7")])
    assert [Rule.SUCCESS_AFTER_FAILURES] == [a.rule for a in alerts]


def test_the_failure_index_counts_what_it_stores() -> None:
    """The running item count the total cap reads equals what the keys hold, through
    folding, pruning, expiry and eviction (a drift would let memory grow past the cap)."""
    rng = random.Random(7)
    index = FailureIndex(window=600.0, max_keys=50, max_items=400, per_key=4, slices=4)
    now = 0.0
    for _ in range(20_000):
        now += rng.random() * 3
        index.add(f"k{rng.randrange(80)}", Entry(now, rng.randrange(1, 3), "x"))
        if rng.random() < 0.01:
            index.expire(now)
        assert index.recount() == index.items <= 400
        assert len(index) <= 50


def test_histories_stay_within_their_caps() -> None:
    """Many users, and one user seen from every country and 500 IPs in a day: the users,
    their places and today's IPs are capped, and evidence still names the newest."""
    caps = Caps(users=100, places=8, ips=8, day_ips=64)
    sentinel = Sentinel(replace(CFG, quiet_minutes=0), caps)
    crowd = [login(at(i * 0.01, days=-15), f"u{i}", "192.0.2.1") for i in range(1_000)]
    countries = [f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(200)]
    globetrotter = [
        login(at(20 + i * 0.1), "gus", f"2001:db8::{i:x}", countries[i % 200], f"AS{i}")
        for i in range(500)
    ]
    sentinel.observe([*crowd, *habit("gus"), *globetrotter])
    sizes = sentinel.sizes()
    assert sizes["users"] <= caps.users
    # day buckets (11 days here) + countries + networks and their names + IPs + today's
    # IPs + today's countries (200: GeoIP's codes, not attacker-chosen) + hourly highs
    assert 11 + 8 + 2 * 8 + 8 + 64 + 200 + 0 == sizes["largest_history"]
    last = sentinel.observe([login(at(80), "gus", "2001:db8::ffff", "ZZ", "AS9")])
    evidence = dict(next(a for a in last if a.rule is Rule.NEW_COUNTRY).evidence)
    # The 8 most recently seen remain: i = 492..499, countries[92..99], newest first.
    assert evidence["usual countries"].startswith("DV (last seen 2026-11-02 09:09:54 UTC), DU")
    assert evidence["usual countries"].endswith("DR (last seen 2026-11-02 09:09:30 UTC), +3 more")


def test_alerts_no_runs_the_rules_but_raises_nothing() -> None:
    """`alerts = no`: nothing raised; a reload to `yes` judges with the state kept."""
    sentinel = Sentinel(replace(CFG, alerts=False))
    assert [] == sentinel.observe(habit("ola"))
    sentinel.reconfigure(CFG)
    trip = sentinel.observe([login(at(0), "ola", "203.0.113.5", "SE", "AS3215")])
    assert [Rule.NEW_COUNTRY] == [a.rule for a in trip]


def test_a_huge_username_is_kept_cut() -> None:
    """A 100 kB username costs the index no more than MAX_NAME characters, and a login
    with the same name still finds its failures."""
    huge = "a" * 100_000
    sentinel = Sentinel(CFG)
    alerts = sentinel.observe(
        [*[fail(at(i), huge, "203.0.113.1") for i in range(10)], login(at(11), huge, "x")]
    )
    assert [Rule.SUCCESS_AFTER_FAILURES] == [a.rule for a in alerts]
    assert huge == alerts[0].user
    assert max(len(k) for k in sentinel._failures.by_user._keys) == MAX_NAME


def test_a_spray_of_distinct_usernames_costs_a_bounded_few_hundred_bytes_a_key() -> None:
    """150,000 failures, each a new username from a new address: the two indexes fill to
    their caps and hold there, at under 1 KiB a key (an empty deque per key cost ~600 B
    each, and the daemon grew by 190 MB; issue 17's lesson, held for the sentinel)."""
    import tracemalloc

    s = Sentinel(SentinelConfig())
    t0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
    tracemalloc.start()
    try:
        for start in range(0, 150_000, 1000):
            s.observe(
                [
                    Observation(
                        time=t0 + timedelta(milliseconds=10 * i),
                        kind=Kind.FAILURE,
                        user=f"user{i}@example.org",
                        ip=f"2001:db8::{i >> 16:x}:{i & 0xFFFF:x}",
                    )
                    for i in range(start, start + 1000)
                ]
            )
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    sizes = s.sizes()
    assert sizes["failure_users"] == sizes["failure_ips"] == Caps().failure_keys
    keys = sizes["failure_users"] + sizes["failure_ips"]
    assert held < keys * 1024, f"{held / keys:.0f} bytes a key"
