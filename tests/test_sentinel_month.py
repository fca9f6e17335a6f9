"""A synthetic month through the sentinel: every planted compromise alerts exactly once, and
nothing else alerts — neither the look-alikes nor a month of ordinary life and spraying.

The month (tests/sentinel_month.py) carries its plants and their expected rules beside
the data; these tests only compare the sentinel's alerts with them, for several seeds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import pytest

from mlsd.alerts import Alert, Observation, Rule
from mlsd.sentinel.engine import Sentinel, posix, warm_window
from tests.sentinel_month import START, Month, month

SEEDS = (1, 2, 3, 4, 5)
BATCH = 500
"""Observations per committed batch (ingest commits many lines at once)."""


def batches(observations: Sequence[Observation]) -> Iterator[Sequence[Observation]]:
    for i in range(0, len(observations), BATCH):
        yield observations[i : i + BATCH]


def alerts_of(m: Month) -> list[Alert]:
    sentinel = Sentinel(m.config)
    return [a for batch in batches(m.observations) for a in sentinel.observe(batch)]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_compromise_alerts_once_and_nothing_else(seed: int) -> None:
    """The alerts, counted by (user, rule), are exactly the plants' expectations."""
    m = month(seed)
    alerts = alerts_of(m)
    expected = Counter((p.user, rule) for p in m.plants for rule in p.expect)
    assert expected == Counter((a.user, a.rule) for a in alerts)
    day_of = {(p.user, rule): p.day for p in m.plants for rule in p.expect}
    for alert in alerts:
        assert day_of[alert.user, alert.rule] == (alert.time - START).days


def test_the_month_plants_every_rule_and_every_look_alike() -> None:
    """The generator plants a compromise for each rule and six look-alikes (the issue's,
    plus typos, a service account and a bulk sender), so the test above cannot pass by
    planting nothing."""
    m = month(1)
    assert set(Rule) == {rule for p in m.plants for rule in p.expect}
    assert 6 == sum(1 for p in m.plants if not p.expect)
    assert len(m.observations) > 50_000
    assert sorted(m.observations, key=lambda o: o.time) == m.observations


def test_the_same_seed_gives_the_same_month_and_alert_ids() -> None:
    """Seeded: the same month, hence the same alerts with the same ids."""
    first, again = month(3), month(3)
    assert first.observations == again.observations
    assert [a.id for a in alerts_of(first)] == [a.id for a in alerts_of(again)]


@pytest.mark.parametrize("seed", (2, 4))
def test_a_restart_mid_month_warms_up_and_raises_the_same_alerts(seed: int) -> None:
    """Stop at any day, warm from the journals' span `warm_window` names, go on: the alerts
    after the restart are those of a sentinel that never stopped, with the same ids."""
    m = month(seed)
    live = alerts_of(m)
    for plant in m.plants:
        if not plant.expect:
            continue
        # Restart in the morning of a compromise's day, before it happens.
        cut = posix(START) + plant.day * 86_400 + 3_600
        done = [o for o in m.observations if posix(o.time) < cut]
        rest = m.observations[len(done) :]
        window = warm_window(m.config, done[-1].time)
        since_l, since_f = posix(window.logins_since), posix(window.failures_since)
        history = [
            o for o in done if posix(o.time) >= (since_f if o.kind == "failure" else since_l)
        ]
        sentinel = Sentinel(m.config)
        sentinel.warm(history)
        after = [a for batch in batches(rest) for a in sentinel.observe(batch)]
        assert [a.id for a in live if posix(a.time) >= cut] == [a.id for a in after]
