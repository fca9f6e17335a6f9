"""The sentinel's memory bounds: every structure it keeps, and the most it may hold.

The failures it is fed carry attacker-chosen usernames and addresses: a spray of a million
usernames, or an IPv6 botnet, must not grow the daemon without bound. So every per-user and
per-IP structure is pruned by log time *and* capped, and past a cap the least recently
touched key is forgotten (LRU). Forgetting is the price of the bound: it can only make a
rule miss (a count too low, a country not remembered), never invent an alert, except where
a docstring below says otherwise.

The defaults hold a busy server's real users and its attackers' last hour comfortably; the
worst case they allow is a few hundred MB, reached only when every cap is full at once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Caps:
    """How much the sentinel remembers at most (tests shrink them to see the bounds hold)."""

    failure_keys: int = 50_000
    """Users (and, separately, IPs) whose failures are counted at once. A spray of more
    distinct usernames within `failure_window` evicts the least recently failed ones: a
    user's distributed guessing can then go uncounted on the user side, but the guessing
    IPs are still counted on the IP side (a separate index with its own cap)."""
    failure_entries: int = 400_000
    """Stored failures (exact entries and slices, below) across one index: when full, the
    least recently failed keys are evicted until it fits."""
    per_key: int = 64
    """Failures kept exactly per key (time, attempts, the IP or user on the other side).
    Older ones within the window are folded into `slices` time slices, counted without
    their detail; the slice straddling the window's start is dropped, so with more than
    `per_key` failures in the window a count is a lower bound, within one slice."""
    slices: int = 16
    """Slices per `failure_window` for the folded failures of one key."""
    users: int = 50_000
    """Users whose login history is kept (only successful logins and submissions make one:
    an attacker needs a password to add a user). Least recently active evicted first."""
    places: int = 64
    """Countries, and separately networks (ASNs), remembered per user within
    `history_days`; past it the least recently seen is forgotten (and would count as new
    again: the one way a cap can raise an alert, for a user seen from 64+ countries)."""
    ips: int = 32
    """IPs remembered per user for the evidence (the rules do not judge by IP)."""
    day_ips: int = 1_024
    """Distinct IPs per user and day counted exactly for many_sources; past it every IP not
    among them counts as new (an over-count, only far above any sane `max_ips`)."""
    # Not a cap here but bounded all the same: a user's countries of the day (GeoIP's
    # codes, a few hundred at most); names in the failure indexes are cut at
    # mlsd.sentinel.windows.MAX_NAME characters.
    quiet: int = 100_000
    """(user, rule) pairs whose last alert time is kept for `quiet_minutes`."""
