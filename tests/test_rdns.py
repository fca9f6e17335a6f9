"""Reverse DNS against a real DNS server on loopback: answers, NXDOMAIN, silence, the cache."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from mlsd import config
from mlsd.config import DnsConfig
from mlsd.enrich.rdns import (
    ERROR,
    NONE,
    OK,
    SUSPEND_AFTER,
    SUSPEND_FOR,
    TIMEOUT,
    UNKNOWN_HOST,
    Reverse,
    ReverseResolver,
    TtlCache,
)
from mlsd.errors import ConfigError
from tests.dnskit import DnsServer, ptr_name

# Short enough to keep the suite quick, long enough for loopback under a loaded CI machine.
TIMEOUT_S = 0.5


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    """A DNS server on 127.0.0.1 with a few PTR records."""
    server = DnsServer().start()
    server.add_ptr("192.0.2.1", "mail.example.org", forward=["192.0.2.1"])
    server.add_ptr("2001:db8::25", "mx.example.net", forward=["2001:db8::25"])
    server.add_ptr("192.0.2.66", "liar.example.com", forward=["203.0.113.9"])
    server.add_ptr("192.0.2.67", "nowhere.example.com")  # PTR, but the name has no address
    server.silent.add(ptr_name("192.0.2.99"))
    server.servfail.add(ptr_name("192.0.2.50"))
    yield server
    server.stop()


def resolver(dns: DnsServer, **kw: Any) -> ReverseResolver:
    """A resolver that asks only `dns`."""
    clock = kw.pop("clock", None)
    cfg = DnsConfig(reverse="lookup", servers=(dns.address,), timeout=TIMEOUT_S, **kw)
    return ReverseResolver(cfg) if clock is None else ReverseResolver(cfg, clock=clock)


def run(coro: Any) -> Any:
    """Run a coroutine in a fresh loop, never longer than 20 timeouts (a bounded wait)."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, TIMEOUT_S * 20)

    return asyncio.run(bounded())


async def many(r: ReverseResolver, *ips: str) -> dict[str, Reverse]:
    """resolve_many, then close the resolver."""
    try:
        return await r.resolve_many(ips)
    finally:
        await r.close()


def test_answer_ipv4_and_ipv6(dns: DnsServer) -> None:
    """A PTR record gives the name and OK, for IPv4 and IPv6."""
    got = run(many(resolver(dns), "192.0.2.1", "2001:db8::25"))
    assert {
        "192.0.2.1": Reverse("mail.example.org", OK),
        "2001:db8::25": Reverse("mx.example.net", OK),
    } == got


def test_nxdomain_is_none(dns: DnsServer) -> None:
    """NXDOMAIN: hostname `unknown` (Postfix's word), status NONE."""
    assert {"192.0.2.2": Reverse(UNKNOWN_HOST, NONE)} == run(many(resolver(dns), "192.0.2.2"))


def test_no_ptr_record_is_none(dns: DnsServer) -> None:
    """The name exists but holds no PTR (NOERROR, no data): NONE too."""
    dns.addresses[ptr_name("192.0.2.3")] = []
    assert {"192.0.2.3": Reverse(UNKNOWN_HOST, NONE)} == run(many(resolver(dns), "192.0.2.3"))


def test_servfail_is_error(dns: DnsServer) -> None:
    """SERVFAIL: ERROR, told apart from a timeout."""
    assert {"192.0.2.50": Reverse(UNKNOWN_HOST, ERROR)} == run(many(resolver(dns), "192.0.2.50"))


def test_silent_server_times_out_while_other_work_continues(dns: DnsServer) -> None:
    """A query that is never answered ends as TIMEOUT; meanwhile the loop keeps working."""

    async def scenario() -> tuple[dict[str, Reverse], Reverse, bool, int]:
        r = resolver(dns)
        batch = asyncio.create_task(r.resolve_many(["192.0.2.99"]))
        ticks = 0
        # Other work while the silent lookup is pending: a second lookup, and a ticker.
        other = await r.resolve("192.0.2.1")
        pending_after_other = not batch.done()
        while not batch.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await r.close()
        return batch.result(), other, pending_after_other, ticks

    got, other, pending_after_other, ticks = run(scenario())
    assert {"192.0.2.99": Reverse(UNKNOWN_HOST, TIMEOUT)} == got
    assert Reverse("mail.example.org", OK) == other
    assert pending_after_other and ticks > 0


def test_dead_resolver_batch_is_bounded_and_uses_no_thread_pool(dns: DnsServer) -> None:
    """Resolver silent for everything: a 300-IP batch is all TIMEOUT, after at most
    `concurrency` queries, with no executor threads piling up."""
    dns.silent_all = True
    ips = [f"198.51.100.{i}" for i in range(1, 151)] + [f"2001:db8:9::{i:x}" for i in range(150)]
    threads_before = threading.active_count()

    async def scenario() -> tuple[dict[str, Reverse], int]:
        r = resolver(dns, concurrency=10)
        got = await r.resolve_many(ips)
        threads_during = threading.active_count()
        await r.close()
        return got, threads_during

    got, threads_during = run(scenario())
    assert {Reverse(UNKNOWN_HOST, TIMEOUT)} == set(got.values()) and 300 == len(got)
    # The rest timed out still waiting for a slot: the resolver saw one round of
    # `concurrency` queries — two on a loaded machine, where the first round's timeouts free
    # their slots in the same instant as the batch's deadline (seen once: 20). Not 300.
    assert dns.total() <= 2 * 10
    # c-ares has one event thread of its own; nothing like a pool of blocked getnameinfo.
    assert threads_during <= threads_before + 2


def test_second_lookup_is_served_from_the_cache(dns: DnsServer) -> None:
    """The same IP again (same batch, next batch, single call): one query in all."""

    async def scenario() -> tuple[dict[str, Reverse], dict[str, Reverse], Reverse, int, int]:
        r = resolver(dns)
        first = await r.resolve_many(["192.0.2.1", "192.0.2.1"])
        second = await r.resolve_many(["192.0.2.1"])
        third = await r.resolve("192.0.2.1")
        await r.close()
        return first, second, third, r.queries, r.hits

    first, second, third, queries, hits = run(scenario())
    assert first == second == {"192.0.2.1": Reverse("mail.example.org", OK)}
    assert Reverse("mail.example.org", OK) == third
    assert 1 == dns.count("192.0.2.1") == queries
    assert hits >= 2


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("192.0.2.2", Reverse(UNKNOWN_HOST, NONE)),
        ("192.0.2.99", Reverse(UNKNOWN_HOST, TIMEOUT)),
        ("192.0.2.50", Reverse(UNKNOWN_HOST, ERROR)),
    ],
    ids=["nxdomain", "timeout", "servfail"],
)
def test_failures_are_cached_too(dns: DnsServer, ip: str, expected: Reverse) -> None:
    """NXDOMAIN, a timeout and SERVFAIL are remembered: the second batch sends no query."""

    async def scenario() -> list[dict[str, Reverse]]:
        r = resolver(dns)
        out = [await r.resolve_many([ip]), await r.resolve_many([ip])]
        await r.close()
        return out

    assert [{ip: expected}, {ip: expected}] == run(scenario())
    assert 1 == dns.count(ip)


def test_entries_expire_answers_after_cache_ttl_failures_after_failure_ttl(
    dns: DnsServer,
) -> None:
    """A failure is asked again after failure_ttl; an answer only after cache_ttl."""
    clock = FakeClock()

    async def scenario() -> None:
        r = resolver(dns, clock=clock, cache_ttl=3600.0, failure_ttl=60.0)
        await r.resolve_many(["192.0.2.1", "192.0.2.50"])
        clock.now += 61
        await r.resolve_many(["192.0.2.1", "192.0.2.50"])
        assert (1, 2) == (dns.count("192.0.2.1"), dns.count("192.0.2.50"))
        clock.now += 3600
        await r.resolve_many(["192.0.2.1", "192.0.2.50"])
        assert (2, 3) == (dns.count("192.0.2.1"), dns.count("192.0.2.50"))
        await r.close()

    run(scenario())


def test_cache_is_bounded(dns: DnsServer) -> None:
    """cache_size = 2: a third IP pushes out the least recently used one."""

    async def scenario() -> None:
        r = resolver(dns, cache_size=2)
        await r.resolve_many(["192.0.2.1"])
        await r.resolve_many(["192.0.2.2"])
        await r.resolve_many(["192.0.2.1"])  # 192.0.2.1 is now the most recently used
        await r.resolve_many(["192.0.2.3"])  # evicts 192.0.2.2
        await r.resolve_many(["192.0.2.1", "192.0.2.2"])
        await r.close()

    run(scenario())
    assert (1, 2, 1) == (dns.count("192.0.2.1"), dns.count("192.0.2.2"), dns.count("192.0.2.3"))


@pytest.mark.parametrize(
    ("ip", "expected", "forward_query"),
    [
        ("192.0.2.1", Reverse("mail.example.org", OK), ("mail.example.org", "A")),
        ("2001:db8::25", Reverse("mx.example.net", OK), ("mx.example.net", "AAAA")),
        ("192.0.2.66", Reverse(UNKNOWN_HOST, NONE), ("liar.example.com", "A")),
        ("192.0.2.67", Reverse(UNKNOWN_HOST, NONE), ("nowhere.example.com", "A")),
    ],
    ids=["confirmed-v4", "confirmed-v6", "points-elsewhere", "name-does-not-resolve"],
)
def test_forward_confirmation(
    dns: DnsServer, ip: str, expected: Reverse, forward_query: tuple[str, str]
) -> None:
    """forward_confirm: the PTR name must resolve back to the IP, as Postfix requires."""
    assert {ip: expected} == run(many(resolver(dns, forward_confirm=True), ip))
    assert 1 == dns.count(*forward_query)


def test_without_forward_confirmation_the_ptr_name_is_kept(dns: DnsServer) -> None:
    """Default: the PTR name as published, and no A/AAAA query."""
    assert {"192.0.2.66": Reverse("liar.example.com", OK)} == run(many(resolver(dns), "192.0.2.66"))
    assert 0 == dns.count("liar.example.com", "A")


def test_failures_are_warned_about_once_not_per_lookup(dns: DnsServer) -> None:
    """Many failing lookups in a row: one warning carrying the count."""
    dns.silent_all = True
    with structlog.testing.capture_logs() as logs:
        run(many(resolver(dns), *(f"198.51.100.{i}" for i in range(1, 21))))
    warnings: list[Mapping[str, Any]] = [
        e for e in logs if e["event"] == "reverse dns lookups failing"
    ]
    assert 1 == len(warnings) and TIMEOUT == warnings[0]["status"]


def test_resolver_can_be_used_from_successive_loops(dns: DnsServer) -> None:
    """`mlsd lookup` and tests run several event loops: the channel follows the loop."""
    r = resolver(dns)
    assert Reverse("mail.example.org", OK) == run(r.resolve("192.0.2.1"))
    assert {"192.0.2.2": Reverse(UNKNOWN_HOST, NONE)} == run(many(r, "192.0.2.2"))


def test_ttl_cache_unit() -> None:
    """TtlCache: expiry on the injected clock, LRU order on get."""
    clock = FakeClock()
    cache = TtlCache(2, clock)
    a, b, c = Reverse("a", OK), Reverse("b", OK), Reverse("c", OK)
    cache.put("1", a, 10)
    cache.put("2", b, 10)
    assert a == cache.get("1")
    cache.put("3", c, 10)
    assert (a, None, c) == (cache.get("1"), cache.get("2"), cache.get("3"))
    clock.now += 10
    assert (None, None) == (cache.get("1"), cache.get("3"))
    assert 0 == len(cache)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("127.0.0.1:5353", ("127.0.0.1:5353",)),
        ("192.0.2.53, ::1 [2001:db8::53]:53", ("192.0.2.53", "::1", "[2001:db8::53]:53")),
    ],
)
def test_dns_servers_key(tmp_path: Path, text: str, expected: tuple[str, ...]) -> None:
    """`[dns] servers`: IPs with optional ports, IPv6 with a port in brackets."""
    assert expected == config.loads(f"[dns]\nservers = {text}\n", tmp_path / "m.conf").dns.servers


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("servers = resolver.example", "expected IP addresses"),
        ("servers = 192.0.2.53:70000", "expected IP addresses"),
        ("timeout = 0", "expected a number of seconds greater than 0"),
        ("concurrency = 0", "expected a whole number from 1 to 1000"),
        ("forward_confirm = perhaps", "expected yes or no"),
        ("reverse = dns", "expected one of: postfix, lookup, off"),
    ],
)
def test_dns_keys_refuse_bad_values(tmp_path: Path, line: str, message: str) -> None:
    """Bad `[dns]` values fail at load, naming section, key and what is expected."""
    with pytest.raises(ConfigError, match=message) as info:
        config.loads(f"[dns]\n{line}\n", tmp_path / "m.conf")
    assert ("dns", line.split(" ", maxsplit=1)[0]) == (info.value.section, info.value.key)


def test_dns_defaults_and_rendering(tmp_path: Path) -> None:
    """The documented defaults; booleans render as yes/no in check-config."""
    cfg = config.loads("[dns]\nreverse = lookup\nforward_confirm = yes\n", tmp_path / "m.conf")
    assert DnsConfig(reverse="lookup", forward_confirm=True) == cfg.dns
    assert (2.0, 50, 10000, 3600.0, 300.0) == (
        cfg.dns.timeout,
        cfg.dns.concurrency,
        cfg.dns.cache_size,
        cfg.dns.cache_ttl,
        cfg.dns.failure_ttl,
    )
    assert "forward_confirm = yes\n" in config.render(cfg)


def test_dead_resolver_is_suspended_then_tried_again(dns: DnsServer) -> None:
    """After SUSPEND_AFTER timeouts in a row, new IPs get TIMEOUT without a query (and are
    not cached); after SUSPEND_FOR the next batch asks again, and an answer lifts it."""
    dns.silent_all = True
    clock = FakeClock()
    first = [f"198.51.100.{i}" for i in range(1, SUSPEND_AFTER + 1)]
    later = [f"203.0.113.{i}" for i in range(1, 31)]

    async def scenario() -> None:
        r = resolver(dns, clock=clock, concurrency=SUSPEND_AFTER)
        with structlog.testing.capture_logs() as logs:
            assert {Reverse(UNKNOWN_HOST, TIMEOUT)} == set((await r.resolve_many(first)).values())
            sent = dns.total()
            got = await r.resolve_many(later)
        assert {Reverse(UNKNOWN_HOST, TIMEOUT)} == set(got.values())
        assert (sent, len(later)) == (dns.total(), r.suspended)
        assert 1 == len([e for e in logs if "lookups suspended" in e["event"]])
        clock.now += SUSPEND_FOR
        dns.silent_all = False
        dns.add_ptr("203.0.113.1", "back.example.org")
        assert Reverse("back.example.org", OK) == await r.resolve("203.0.113.1")
        assert Reverse(UNKNOWN_HOST, NONE) == await r.resolve("203.0.113.2")
        await r.close()

    run(scenario())
