"""Live reverse DNS for `[dns] reverse = lookup`: asynchronous PTR queries that never stall mlsd.

The resolver is c-ares through aiodns. Queries are non-blocking UDP/TCP on c-ares's own
single event thread (pycares 5), whose results come back to the asyncio loop through
`call_soon_threadsafe`: nothing ever waits in `getnameinfo` inside an executor, so a silent
resolver cannot fill a thread pool, and nothing here blocks the loop. Every lookup is bounded
by `timeout` (asyncio's and c-ares's own, with one try), at most `concurrency` queries are in
flight, and answers *and* failures are kept in a bounded TTL cache so that a dead resolver
costs at most one timeout per batch, and an IP that keeps attacking costs one query per TTL.
After SUSPEND_AFTER timeouts in a row the resolver is deemed dead for SUSPEND_FOR seconds:
new IPs get TIMEOUT at once (not cached), so scanning a log with thousands of new IPs spread
over many batches costs a few timeouts, not one per batch; then the next batch tries again.

`reverse_dns_status` values (the same in every `[dns] reverse` mode):

========  =================================================  ======================  =========
status    meaning                                            `hostname`              MLS
========  =================================================  ======================  =========
OK        a PTR name (forward-confirmed if asked)            the name                (no error)
NONE      no name: NXDOMAIN, no PTR record, the name does    `unknown`               Errno 1,
          not resolve back (forward_confirm), or Postfix                             Errno 4
          logged `unknown`
TIMEOUT   no answer within `timeout`                         `unknown`               Timeout,
                                                                                     Errno 2
ERROR     the resolver answered with an error (SERVFAIL,     `unknown`               Errno 2,
          REFUSED, malformed reply…)                                                 Errno 3
N/A       the log line names no client host (Dovecot) and    empty
          no lookup was made
OFF       `reverse = off`                                    empty
========  =================================================  ======================  =========

MLS: MailLogSentinel wrote `socket.gethostbyaddr`'s error as `Errno n`, n being the resolver's
h_errno: 1 HOST_NOT_FOUND (NXDOMAIN) and 4 NO_DATA (no PTR) are NONE; 2 TRY_AGAIN covered
both a timeout and SERVFAIL, which mlsd tells apart as TIMEOUT and ERROR; 3 NO_RECOVERY is
ERROR. `unknown` is what Postfix itself logs for a client without a (confirmed) name, so a
row means the same thing whether Postfix or mlsd did the lookup.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final, NamedTuple, Protocol

import aiodns
import aiodns.error

from mlsd import logs
from mlsd.config import DnsConfig
from mlsd.rows import NOT_AVAILABLE, ReverseStatus

# The statuses a lookup answers (their one definition is mlsd.rows.ReverseStatus).
OK: Final = ReverseStatus.OK
NONE: Final = ReverseStatus.NONE
TIMEOUT: Final = ReverseStatus.TIMEOUT
ERROR: Final = ReverseStatus.ERROR
FAILURE_REPORT_INTERVAL: Final = 600.0
"""Seconds between two warnings about failing lookups."""
SUSPEND_AFTER: Final = 10
"""Timeouts in a row (no answer of any kind in between) that mark the resolver as dead."""
SUSPEND_FOR: Final = 30.0
"""Seconds during which new lookups are answered TIMEOUT at once, without a query."""
UNKNOWN_HOST: Final = "unknown"
"""Postfix's word for a client without a (confirmed) name; mlsd writes it for every failure."""

# c-ares status codes (ares.h), as aiodns reports them in DNSError.args[0].
_ARES_ENODATA: Final = 1
_ARES_ENOTFOUND: Final = 4
_ARES_ETIMEOUT: Final = 12
# Below this share of `timeout` left, a lookup still waiting for a slot is not sent.
_MIN_TIME_LEFT: Final = 0.1

_log = logs.get("mlsd.rdns")


class Reverse(NamedTuple):
    """One IP's reverse DNS: the name (or `unknown`) and its status (see the module docs)."""

    hostname: str
    status: str


class ReverseLookup(Protocol):
    """What the enricher needs from a resolver (a fake one in tests)."""

    def cached(self, ip: str) -> Reverse | None:
        """The cached answer for `ip`, without any query."""

    async def resolve_many(self, ips: Iterable[str]) -> dict[str, Reverse]:
        """Every IP's answer; the whole call is bounded by the lookup timeout."""


class TtlCache:
    """A bounded LRU map of IP → Reverse whose entries expire (monotonic clock)."""

    def __init__(self, size: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, Reverse]] = OrderedDict()

    def get(self, ip: str) -> Reverse | None:
        """The live entry for `ip`, marked as recently used; None if absent or expired."""
        entry = self._data.get(ip)
        if entry is None:
            return None
        expires, value = entry
        if self._clock() >= expires:
            del self._data[ip]
            return None
        self._data.move_to_end(ip)
        return value

    def put(self, ip: str, value: Reverse, ttl: float) -> None:
        """Remember `value` for `ttl` seconds, dropping the least recently used beyond size."""
        self._data[ip] = (self._clock() + ttl, value)
        self._data.move_to_end(ip)
        while len(self._data) > self._size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


class ReverseResolver:
    """PTR lookups with a hard timeout, a concurrency bound and a TTL cache.

    Made once at start (no I/O until the first lookup); the c-ares channel is created in the
    running loop on first use and recreated if a later call runs in another loop.
    """

    def __init__(self, cfg: DnsConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._cfg = cfg
        self._timeout = cfg.timeout
        self._cache = TtlCache(cfg.cache_size, clock)
        self._dns: aiodns.DNSResolver | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self._inflight: dict[str, asyncio.Task[Reverse]] = {}
        self._clock = clock
        self._failures = 0
        self._next_report = 0.0
        self._timeouts_in_a_row = 0
        self._suspended_until = 0.0
        self.queries = 0
        """PTR lookups actually started (cache misses), for status and tests."""
        self.hits = 0
        """Answers served from the cache."""
        self.suspended = 0
        """Lookups answered TIMEOUT without a query while the resolver was deemed dead."""

    def cached(self, ip: str) -> Reverse | None:
        """The cached answer for `ip`, or None; never queries."""
        hit = self._cache.get(ip)
        if hit is not None:
            self.hits += 1
        return hit

    async def resolve(self, ip: str) -> Reverse:
        """One IP's reverse DNS, from the cache or the resolver; returns within `timeout`."""
        hit = self.cached(ip)
        if hit is not None:
            return hit
        self._bind_loop()
        task = self._inflight.get(ip)
        if task is None:
            task = asyncio.ensure_future(self._lookup(ip))
            self._inflight[ip] = task
            task.add_done_callback(functools.partial(self._forget, ip))
        # Shielded: a caller that gives up does not cancel a lookup others may share; the
        # lookup ends on its own at the timeout and its result still fills the cache.
        return await asyncio.shield(task)

    async def resolve_many(self, ips: Iterable[str]) -> dict[str, Reverse]:
        """Every distinct IP's answer, looked up concurrently; bounded by `timeout` overall.

        Each lookup's timeout also covers its wait for a concurrency slot, so a batch with
        more new IPs than `concurrency` still returns within `timeout`: the ones a dead
        resolver kept waiting are TIMEOUT (and cached as such, for `failure_ttl`).
        """
        out: dict[str, Reverse] = {}
        pending: list[str] = []
        for ip in dict.fromkeys(ips):
            hit = self.cached(ip)
            if hit is None:
                pending.append(ip)
            else:
                out[ip] = hit
        if pending:
            results = await asyncio.gather(*(self.resolve(ip) for ip in pending))
            out.update(zip(pending, results, strict=True))
        return out

    async def close(self) -> None:
        """Cancel what is in flight and release the c-ares channel (idempotent)."""
        for task in list(self._inflight.values()):
            task.cancel()
        self._inflight.clear()
        if self._dns is not None:
            await self._dns.close()
            self._dns = None
        self._loop = None

    def _forget(self, ip: str, task: asyncio.Task[Reverse]) -> None:
        if self._inflight.get(ip) is task:
            del self._inflight[ip]

    def _bind_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return
        # A channel and a semaphore belong to one loop (a CLI run, a test): start afresh.
        self._inflight.clear()
        self._loop = loop
        self._sem = asyncio.Semaphore(self._cfg.concurrency)
        self._dns = aiodns.DNSResolver(
            nameservers=list(self._cfg.servers) or None,
            loop=loop,
            timeout=self._timeout,
            tries=1,
        )

    async def _lookup(self, ip: str) -> Reverse:
        if self._clock() < self._suspended_until:
            # Not cached: once the resolver is back, this IP deserves a real answer.
            self.suspended += 1
            return Reverse(UNKNOWN_HOST, TIMEOUT)
        self.queries += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                assert self._sem is not None  # noqa: S101 - set by _bind_loop
                async with self._sem:
                    # A slot freed by a timed-out lookup can wake a waiter at its own
                    # deadline: a query sent with no time left only loads a dead resolver.
                    if deadline - loop.time() < self._timeout * _MIN_TIME_LEFT:
                        raise TimeoutError
                    result = await self._query(ip)
        except TimeoutError:
            result = Reverse(UNKNOWN_HOST, TIMEOUT)
        self._note_health(result.status)
        ttl = self._cfg.cache_ttl if result.status in (OK, NONE) else self._cfg.failure_ttl
        self._cache.put(ip, result, ttl)
        return result

    async def _query(self, ip: str) -> Reverse:
        assert self._dns is not None  # noqa: S101 - set by _bind_loop
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return Reverse("", NOT_AVAILABLE)
        try:
            # The trailing dot makes the name absolute: no search-domain retries.
            answer = await self._dns.query_dns(addr.reverse_pointer + ".", "PTR")
        except aiodns.error.DNSError as exc:
            return Reverse(UNKNOWN_HOST, _status_of(exc))
        names = [
            str(getattr(rr.data, "dname", "")).rstrip(".")
            for rr in answer.answer
            if rr.type == 12  # PTR; a CNAME on the way is followed by the resolver
        ]
        names = [n for n in names if n]
        if not names:
            return Reverse(UNKNOWN_HOST, NONE)
        name = names[0]
        if not self._cfg.forward_confirm:
            return Reverse(name, OK)
        return await self._confirm(name, addr)

    async def _confirm(
        self, name: str, addr: ipaddress.IPv4Address | ipaddress.IPv6Address
    ) -> Reverse:
        """Keep `name` only if its A (or AAAA) records include `addr`, as Postfix does."""
        assert self._dns is not None  # noqa: S101 - set by _bind_loop
        qtype = "A" if addr.version == 4 else "AAAA"
        try:
            answer = await self._dns.query_dns(name + ".", qtype)
        except aiodns.error.DNSError as exc:
            return Reverse(UNKNOWN_HOST, _status_of(exc))
        for rr in answer.answer:
            raw = getattr(rr.data, "addr", None)
            try:
                if raw is not None and ipaddress.ip_address(raw) == addr:
                    return Reverse(name, OK)
            except ValueError:
                continue
        return Reverse(UNKNOWN_HOST, NONE)

    def _note_health(self, status: str) -> None:
        """A warning for the first failure, then at most one per FAILURE_REPORT_INTERVAL.

        Attackers' reverse zones are often broken, so some failures are normal: the line
        carries the count since the previous one instead of one line per failed lookup.
        """
        now = self._clock()
        if status == TIMEOUT:
            self._timeouts_in_a_row += 1
            if self._timeouts_in_a_row >= SUSPEND_AFTER and now >= self._suspended_until:
                self._suspended_until = now + SUSPEND_FOR
                _log.warning(
                    "reverse dns resolver not answering, lookups suspended",
                    timeouts_in_a_row=self._timeouts_in_a_row,
                    seconds=SUSPEND_FOR,
                    servers=",".join(self._cfg.servers) or "resolv.conf",
                )
        elif status in (OK, NONE, ERROR):
            self._timeouts_in_a_row = 0  # the resolver answered something
        if status not in (TIMEOUT, ERROR):
            return
        self._failures += 1
        if now < self._next_report:
            return
        _log.warning(
            "reverse dns lookups failing",
            status=status,
            failures=self._failures,
            servers=",".join(self._cfg.servers) or "resolv.conf",
            timeout=self._timeout,
            effect="those rows get hostname=unknown",
        )
        self._failures = 0
        self._next_report = now + FAILURE_REPORT_INTERVAL


def _status_of(exc: aiodns.error.DNSError) -> str:
    code = exc.args[0] if exc.args else None
    if code in (_ARES_ENOTFOUND, _ARES_ENODATA):
        return NONE
    if code == _ARES_ETIMEOUT:
        return TIMEOUT
    return ERROR
