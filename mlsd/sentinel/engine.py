"""The Sentinel: the four rules over committed observations, in log order, with their state.

Pure and bounded: no I/O, no wall clock (every window is measured in the events' own log
time, so a replay gives the same alerts with the same ids), and every structure capped
(mlsd.sentinel.caps). The integrator feeds it committed batches (`observe`), rebuilds it
at start from the journals (`warm`, fed `warm_window`'s span) and hands it a new
configuration on reload (`reconfigure`).

The allow-lists:
- `ignore_users` (exact names): never alerted on; their logins are still history, so
  taking a name off the list later judges it against what it really did.
- `ignore_networks` (CIDR): a login or submission from there never alerts. It still counts
  in the user's history *volume* (first seen, number of logins, sending), because it is the
  user's own login; but its country, network and IP are not learned as the user's usual
  places, nor counted by many_sources, because they describe the VPN, not the user (a VPN
  exit in SE must not make a real login from SE look usual). Failures from there are still
  counted: they are failures.

Deduplication: at most one alert per (user, rule) per `quiet_minutes` of log time; a login
that triggers two rules raises two alerts. Replays of a batch are deduplicated by
`Alert.id` downstream (the alert journal), not here.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from mlsd.alerts import Alert, Observation, Rule
from mlsd.config import SentinelConfig
from mlsd.logins import Kind
from mlsd.rows import NOT_AVAILABLE
from mlsd.sentinel import rules
from mlsd.sentinel.caps import Caps
from mlsd.sentinel.history import Histories
from mlsd.sentinel.windows import Failures, Tally

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def posix(time: datetime) -> float:
    """A log time as POSIX seconds; a naive time is taken as UTC (never the local zone)."""
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return time.timestamp()


@dataclass(frozen=True, slots=True)
class WarmWindow:
    """Where `warm` should start reading each journal, for a restart at `end`."""

    logins_since: datetime
    """Logins and submissions from here on (the logins CSV)."""
    failures_since: datetime
    """Failures from here on (the failures CSV)."""


def warm_window(cfg: SentinelConfig, end: datetime) -> WarmWindow:
    """The spans `warm` needs to reach the state of a daemon that never stopped.

    `history_days` of logins and `failure_window` of failures suffice for the rules; the
    extra `quiet_minutes` (and a day, the history's day buckets) let warm also replay the
    alerts raised just before `end`, so their quiet period holds across the restart.
    """
    quiet = timedelta(minutes=cfg.quiet_minutes)
    return WarmWindow(
        logins_since=end - timedelta(days=cfg.history_days + 1) - quiet,
        failures_since=end - timedelta(minutes=cfg.failure_window) - quiet,
    )


class Sentinel:
    """The rules of issue 20 (README, "Sentinel"); implements mlsd.alerts.Detector."""

    def __init__(self, cfg: SentinelConfig, caps: Caps | None = None) -> None:
        self.caps = caps or Caps()
        self._cfg = cfg
        self._failures = Failures(
            window=cfg.failure_window * 60.0,
            max_keys=self.caps.failure_keys,
            max_items=self.caps.failure_entries,
            per_key=self.caps.per_key,
            slices=self.caps.slices,
        )
        self._histories = Histories(self.caps.users)
        self._quiet: OrderedDict[tuple[str, Rule], float] = OrderedDict()
        self._networks: tuple[Network, ...] = ()
        self._ignored_users: frozenset[str] = frozenset()
        self._now = float("-inf")
        self.reconfigure(cfg)

    # -- the Detector protocol and its companions ------------------------------------

    def observe(self, batch: Sequence[Observation]) -> list[Alert]:
        """Feed one committed batch (log order); the alerts it raised, rate-limited."""
        raised: list[Alert] = []
        for ob in batch:
            self._one(ob, raised)
        self._expire()
        return raised

    def warm(self, history: Iterable[Observation]) -> None:
        """Rebuild the state from the journals at start, raising nothing.

        Feed, merged in log order (e.g. `heapq.merge` on time), the logins and submissions
        since `warm_window(cfg, end).logins_since` and the failures since its
        `failures_since`, up to the last committed line. The rules run silently: an alert
        they would raise was raised when the line was first read, so it only starts its
        quiet period. `warm(H)` then `observe(B)` gives the same alerts, same ids, as
        `observe(H)` then `observe(B)` (within the caps).
        """
        for ob in history:
            self._one(ob, None)
        self._expire()

    def reconfigure(self, cfg: SentinelConfig) -> None:
        """A reloaded `[sentinel]`: new thresholds and allow-lists apply from the next line;
        the state (history, failures) is kept."""
        self._cfg = cfg
        self._failures.set_window(cfg.failure_window * 60.0)
        self._networks = tuple(ipaddress.ip_network(n, strict=False) for n in cfg.ignore_networks)
        self._ignored_users = frozenset(cfg.ignore_users)

    # -- for tests and the status line -----------------------------------------------

    def sizes(self) -> dict[str, int]:
        """How full each bounded structure is (the caps hold: asserted by the tests)."""
        return {
            "failure_users": len(self._failures.by_user),
            "failure_user_items": self._failures.by_user.items,
            "failure_ips": len(self._failures.by_ip),
            "failure_ip_items": self._failures.by_ip.items,
            "largest_failure_key": max(
                self._failures.by_user.largest_key(), self._failures.by_ip.largest_key()
            ),
            "users": len(self._histories),
            "largest_history": self._histories.largest(),
            "quiet": len(self._quiet),
        }

    # -- one observation -------------------------------------------------------------

    def _one(self, ob: Observation, raised: list[Alert] | None) -> None:
        now = posix(ob.time)
        self._now = max(self._now, now)
        if ob.kind is Kind.FAILURE:
            self._failures.add(now, ob.user, ob.ip, ob.attempts)
        elif ob.kind is Kind.LOGIN:
            self._login(ob, now, raised)
        elif ob.kind is Kind.SUBMIT:
            self._submit(ob, now, raised)

    def _ignored_network(self, ip: str) -> bool:
        if not self._networks or not ip:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self._networks)

    def _login(self, ob: Observation, now: float, raised: list[Alert] | None) -> None:
        if not ob.user:
            return
        cfg = self._cfg
        vpn = self._ignored_network(ob.ip)
        fired: list[Alert] = []
        history = self._histories.touch(ob.user)
        history.prune(now, cfg.history_days)
        if not vpn and cfg.failures > 0:
            by_user = self._failures.by_user.tally(ob.user, now)
            by_ip = self._failures.by_ip.tally(ob.ip, now) if ob.ip else Tally()
            if by_user.count >= cfg.failures or by_ip.count >= cfg.failures:
                fired.append(rules.success_after_failures(ob, cfg, by_user, by_ip))
        if not vpn and history.judged(now, cfg.min_history_days, cfg.min_history_logins):
            if (
                cfg.new_country
                and ob.country != NOT_AVAILABLE
                and ob.country not in history.countries
            ):
                fired.append(rules.new_country(ob, cfg, history))
            if cfg.new_network and ob.asn != NOT_AVAILABLE and ob.asn not in history.networks:
                fired.append(rules.new_network(ob, cfg, history))
        if not vpn and (cfg.max_ips or cfg.max_countries):
            counts = history.sources(now, ob.ip, ob.country, self.caps.day_ips)
            if counts is not None and not history.day_fired:
                ips, countries = counts
                if (cfg.max_ips and ips >= cfg.max_ips) or (
                    cfg.max_countries and countries >= cfg.max_countries
                ):
                    history.day_fired = True
                    fired.append(rules.many_sources(ob, cfg, history, ips, countries))
        history.learn(now, ob.ip, ob.country, ob.asn, ob.aso, places=not vpn, cap=self.caps.places)
        if ob.user not in self._ignored_users:
            for alert in fired:
                self._emit(alert, now, raised)

    def _submit(self, ob: Observation, now: float, raised: list[Alert] | None) -> None:
        if not ob.user:
            return
        cfg = self._cfg
        history = self._histories.touch(ob.user)
        history.prune(now, cfg.history_days)
        if not history.submit(now, ob.recipients) or history.hour_fired or not cfg.send_floor:
            return
        high, _ = history.high()
        total = history.hour_sum
        if total > cfg.send_floor and total > cfg.send_multiple * high:
            history.hour_fired = True
            if ob.user not in self._ignored_users and not self._ignored_network(ob.ip):
                self._emit(rules.send_burst(ob, cfg, history), now, raised)

    def _emit(self, alert: Alert, now: float, raised: list[Alert] | None) -> None:
        """Raise `alert` unless its (user, rule) alerted within `quiet_minutes`."""
        key = (alert.user, alert.rule)
        last = self._quiet.get(key)
        if last is not None and now - last < self._cfg.quiet_minutes * 60.0:
            return
        self._quiet[key] = now
        self._quiet.move_to_end(key)
        if len(self._quiet) > self.caps.quiet:
            self._quiet.popitem(last=False)
        # `alerts = no` keeps the rules running (the state stays right for a reload that
        # turns them on) but raises nothing.
        if raised is not None and self._cfg.alerts:
            raised.append(alert)

    def _expire(self) -> None:
        """Drop what no rule can use any more (run once per batch, not per line)."""
        now = self._now
        if now == float("-inf"):
            return
        self._failures.expire(now)
        self._histories.expire(now, self._cfg.history_days)
        horizon = now - self._cfg.quiet_minutes * 60.0
        while self._quiet:
            key, last = next(iter(self._quiet.items()))
            if last > horizon:
                break
            del self._quiet[key]
