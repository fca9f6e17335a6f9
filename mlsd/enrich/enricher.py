"""An event's enrichment: reverse DNS as `[dns] reverse` says, plus country and ASN (mlsd.geo).

The seam the pipeline calls. The strategy is picked once, at construction (and on reload),
so the per-event path never branches on the configuration:

- `postfix` and `off`: `enricher(event)` is a plain synchronous call, microseconds.
- `lookup`: the batch's IPs are first resolved together, `await enricher.prefetch(events)`
  (bounded by `[dns] timeout` overall), then `enricher(event)` reads those answers. In
  `lookup` mode every row gets mlsd's own answer, also when Postfix logged a name, so that
  the column means one thing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final, Protocol

from mlsd import logs
from mlsd.config import Config
from mlsd.enrich.geo import Geo, GeoResult
from mlsd.enrich.postfix import postfix_reverse
from mlsd.enrich.rdns import Reverse, ReverseLookup, ReverseResolver
from mlsd.rows import NOT_AVAILABLE, AuthFailure, Enrichment, ReverseStatus

OFF: Final = ReverseStatus.OFF
_NO_GEO: Final = GeoResult()
# Attack traffic repeats IPs: remembering each IP's result saves the tree walk, the record
# decoding and the allocation (Enrichment and GeoResult are immutable, so rows can share
# them). Cleared when a database changes or the mode is reloaded, and past this size.
_MEMO_SIZE: Final = 65536
_NOT_RESOLVED: Final = Reverse("", NOT_AVAILABLE)


class Addressed(Protocol):
    """What `prefetch` reads of an event: a failure (AuthFailure) or a login (Login)."""

    @property
    def ip(self) -> str: ...


_log = logs.get("mlsd.enrich")


class Enricher:
    """`Callable[[AuthFailure], Enrichment]`, plus the async batch path for `lookup` mode."""

    def __init__(self, cfg: Config, geo: Geo | None, resolver: ReverseLookup | None = None) -> None:
        """`resolver` is made from `cfg.dns` when `reverse = lookup` and none is given."""
        self._geo = geo
        self._geo_memo: dict[str, GeoResult] = {}
        self._memo: dict[tuple[str, str], Enrichment] = {}
        self._enrich: Callable[[AuthFailure], Enrichment] = self._memoized
        self._answers: dict[str, Reverse] = {}
        self._missed_reported = False
        self._own_resolver = False
        self._resolver: ReverseLookup | None = None
        self._reverse: Callable[[AuthFailure], Reverse] = _postfix
        self._configure(cfg, resolver)

    @property
    def needs_lookup(self) -> bool:
        """True in `lookup` mode: call `prefetch` for each batch."""
        return self._resolver is not None

    def __call__(self, event: AuthFailure) -> Enrichment:
        """The event's enrichment (in `lookup` mode: from the last `prefetch`)."""
        return self._enrich(event)

    def _memoized(self, event: AuthFailure) -> Enrichment:
        # postfix/off: the result depends only on (ip, logged hostname) and the databases.
        key = (event.ip, event.hostname)
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            hit = self._memo[key] = self._build(event)
        return hit

    def _build(self, event: AuthFailure) -> Enrichment:
        rev = self._reverse(event)
        geo = self._geo_of(event.ip)
        return Enrichment(
            hostname=rev.hostname,
            reverse_dns_status=rev.status,
            country_code=geo.country_code,
            asn=geo.asn,
            aso=geo.aso,
        )

    async def prefetch(self, events: Iterable[Addressed]) -> None:
        """`lookup` mode: resolve the batch's IPs concurrently (at most `timeout`), its
        failures' and its logins'. No-op else."""
        if self._resolver is None:
            return
        self._answers = await self._resolver.resolve_many(ev.ip for ev in events if ev.ip)

    def maybe_reload(self) -> bool:
        """Pick up a replaced database file (one stat per path); call once per batch."""
        if self._geo is not None and self._geo.maybe_reload():
            self._geo_memo.clear()
            self._memo.clear()
            return True
        return False

    async def reload(self, cfg: Config) -> None:
        """SIGHUP: reopen the databases, and take a changed `[dns]` section."""
        if self._geo is not None:
            self._geo.reload(cfg.geoip)
        self._geo_memo.clear()
        self._memo.clear()
        await self._close_resolver()
        self._configure(cfg, None)

    async def close(self) -> None:
        """Release the resolver this enricher made, and the databases."""
        await self._close_resolver()
        if self._geo is not None:
            self._geo.close()

    # ---- internals

    def _configure(self, cfg: Config, resolver: ReverseLookup | None) -> None:
        mode = cfg.dns.reverse
        self._answers = {}
        self._resolver = None
        if mode == "lookup":
            self._own_resolver = resolver is None
            self._resolver = resolver if resolver is not None else ReverseResolver(cfg.dns)
            self._reverse = self._looked_up
            self._enrich = self._build
        elif mode == "off":
            self._reverse = _off
            self._enrich = self._memoized
        else:
            self._reverse = _postfix
            self._enrich = self._memoized

    async def _close_resolver(self) -> None:
        if self._own_resolver and isinstance(self._resolver, ReverseResolver):
            await self._resolver.close()
        self._resolver = None
        self._own_resolver = False

    def _looked_up(self, event: AuthFailure) -> Reverse:
        answer = self._answers.get(event.ip)
        if answer is not None:
            return answer
        assert self._resolver is not None  # noqa: S101 - lookup mode
        answer = self._resolver.cached(event.ip)
        if answer is not None:
            return answer
        if not self._missed_reported:
            # A wiring mistake (no prefetch before the rows), not an operator problem.
            self._missed_reported = True
            _log.error("reverse dns answer missing: prefetch() was not awaited", ip=event.ip)
        return _NOT_RESOLVED

    def _geo_of(self, ip: str) -> GeoResult:
        if self._geo is None:
            return _NO_GEO
        hit = self._geo_memo.get(ip)
        if hit is None:
            if len(self._geo_memo) >= _MEMO_SIZE:
                self._geo_memo.clear()
            hit = self._geo_memo[ip] = self._geo.lookup(ip)
        return hit


def _postfix(event: AuthFailure) -> Reverse:
    extra = postfix_reverse(event)
    return Reverse(extra.hostname, extra.reverse_dns_status)


def _off(event: AuthFailure) -> Reverse:
    del event
    return Reverse("", OFF)
