"""The enricher: reverse DNS per `[dns] reverse`, country and ASN, as the pipeline will call it."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from mlsd.config import Config, DnsConfig, GeoipConfig, ReverseMode
from mlsd.enrich.enricher import Enricher
from mlsd.enrich.geo import Geo
from mlsd.enrich.rdns import NONE, OK, TIMEOUT, UNKNOWN_HOST, Reverse
from mlsd.ingest.csvlog import RowFormat
from mlsd.rows import NOT_AVAILABLE, AuthFailure, Enrichment
from tests.dnskit import DnsServer, ptr_name
from tests.test_geo import ASN_DB, COUNTRY_DB, maxmind_country, write_mmdb

GEO = GeoipConfig(country_db=COUNTRY_DB, asn_db=ASN_DB)


def event(ip: str = "89.160.20.112", hostname: str = "unknown") -> AuthFailure:
    """An SMTP AUTH failure from `ip`, as the parser makes it."""
    return AuthFailure(
        time=datetime(2026, 11, 25, 4, 38, tzinfo=UTC),
        server="mail",
        service="smtp",
        mechanism="LOGIN",
        hostname=hostname,
        ip=ip,
        user="admin",
        reason="authentication failure",
    )


def config(reverse: ReverseMode, geoip: GeoipConfig = GEO, **dns: Any) -> Config:
    """A Config with this `[dns] reverse` mode."""
    return Config(geoip=geoip, dns=DnsConfig(reverse=reverse, **dns))


class FakeResolver:
    """A ReverseLookup that answers from a table and records what it was asked."""

    def __init__(self, answers: dict[str, Reverse]) -> None:
        self.answers = answers
        self.asked: list[list[str]] = []

    def cached(self, ip: str) -> Reverse | None:
        return None

    async def resolve_many(self, ips: Iterable[str]) -> dict[str, Reverse]:
        batch = list(dict.fromkeys(ips))
        self.asked.append(batch)
        return {ip: self.answers.get(ip, Reverse(UNKNOWN_HOST, NONE)) for ip in batch}


async def _enriched(enricher: Enricher, events: list[AuthFailure]) -> list[Enrichment]:
    """A batch as the daemon enriches it: `prefetch` (session.step), then one call per row
    (Pipeline.commit)."""
    await enricher.prefetch(events)
    return [enricher(ev) for ev in events]


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        ("mail.example.org", ("mail.example.org", "OK")),
        ("unknown", ("unknown", "NONE")),
        ("", ("", NOT_AVAILABLE)),
    ],
)
def test_postfix_mode_reuses_postfix_name_and_adds_geo(
    hostname: str, expected: tuple[str, str]
) -> None:
    """`reverse = postfix`: the logged name, country and ASN; a plain synchronous call."""
    enrich: Callable[[AuthFailure], Enrichment] = Enricher(config("postfix"), Geo(GEO))
    assert Enrichment(
        hostname=expected[0],
        reverse_dns_status=expected[1],
        country_code="SE",
        asn="AS29518",
        aso="Bredband2 AB",
    ) == enrich(event(hostname=hostname))


def test_off_mode() -> None:
    """`reverse = off`: empty hostname, status OFF; geo still filled."""
    got = Enricher(config("off"), Geo(GEO))(event("1.128.0.1", "host.example"))
    assert (
        Enrichment(hostname="", reverse_dns_status="OFF", asn="AS1221", aso="Telstra Pty Ltd")
        == got
    )


def test_without_databases_every_geo_field_is_na() -> None:
    """No Geo at all (or none of its files): N/A in the three columns."""
    got = Enricher(config("postfix"), None)(event())
    assert (NOT_AVAILABLE, NOT_AVAILABLE, NOT_AVAILABLE) == (got.country_code, got.asn, got.aso)


def test_ipv6_event() -> None:
    """IPv6 clients get their country from the same databases."""
    assert "JP" == Enricher(config("postfix"), Geo(GEO))(event("2001:218::1")).country_code


def test_lookup_mode_batch_path() -> None:
    """`reverse = lookup`: one resolve_many per batch, distinct IPs, answers in order."""
    fake = FakeResolver({"89.160.20.112": Reverse("a.example", OK)})
    enricher = Enricher(config("lookup"), Geo(GEO), fake)
    assert enricher.needs_lookup
    batch = [event(), event("1.128.0.1", "mail.example.org"), event()]
    got = asyncio.run(_enriched(enricher, batch))
    assert [["89.160.20.112", "1.128.0.1"]] == fake.asked
    assert [("a.example", OK), (UNKNOWN_HOST, NONE), ("a.example", OK)] == [
        (e.hostname, e.reverse_dns_status) for e in got
    ]
    assert ["SE", NOT_AVAILABLE, "SE"] == [e.country_code for e in got]


def test_lookup_mode_prefetch_then_plain_calls() -> None:
    """The pipeline keeps its Callable: `await prefetch(batch)`, then `enricher(event)`."""
    fake = FakeResolver({"1.128.0.1": Reverse("b.example", OK)})
    enricher = Enricher(config("lookup"), Geo(GEO), fake)
    batch = [event("1.128.0.1")]
    asyncio.run(enricher.prefetch(batch))
    assert Enrichment(
        hostname="b.example", reverse_dns_status=OK, asn="AS1221", aso="Telstra Pty Ltd"
    ) == enricher(batch[0])


def test_lookup_mode_without_prefetch_is_na_and_logged_once() -> None:
    """A wiring mistake shows as N/A rows and one error line, not an exception per row."""
    enricher = Enricher(config("lookup"), Geo(GEO), FakeResolver({}))
    with structlog.testing.capture_logs() as logs:
        got = [enricher(event()) for _ in range(5)]
    assert {("", NOT_AVAILABLE)} == {(e.hostname, e.reverse_dns_status) for e in got}
    assert 1 == len([e for e in logs if e["log_level"] == "error"])


def test_postfix_and_off_modes_never_touch_a_resolver() -> None:
    """In postfix/off mode prefetch is a no-op even if a resolver was passed."""
    fake = FakeResolver({})
    enricher = Enricher(config("postfix"), Geo(GEO), fake)
    assert not enricher.needs_lookup
    asyncio.run(enricher.prefetch([event()]))
    assert [] == fake.asked


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    """A real DNS server on loopback."""
    server = DnsServer().start()
    server.add_ptr("89.160.20.112", "h112.bredband2.example")
    server.silent.add(ptr_name("1.128.0.1"))
    yield server
    server.stop()


def test_lookup_mode_against_a_real_dns_server(dns: DnsServer) -> None:
    """Made from config alone: real PTR answers; a silent one is TIMEOUT within the bound."""
    cfg = config("lookup", servers=(dns.address,), timeout=0.5)
    enricher = Enricher(cfg, Geo(GEO))

    async def scenario() -> list[Enrichment]:
        try:
            return await asyncio.wait_for(
                _enriched(enricher, [event(), event("1.128.0.1")]), timeout=10
            )
        finally:
            await enricher.close()

    got = asyncio.run(scenario())
    assert [("h112.bredband2.example", OK, "SE"), (UNKNOWN_HOST, TIMEOUT, NOT_AVAILABLE)] == [
        (e.hostname, e.reverse_dns_status, e.country_code) for e in got
    ]


def test_replaced_database_reaches_the_next_rows(tmp_path: Path) -> None:
    """Atomic replacement while running: after maybe_reload the next rows carry new data."""
    path = write_mmdb(
        tmp_path / "c.mmdb", "GeoLite2-Country", {"192.0.2.0/24": maxmind_country("FR")}
    )
    geoip = GeoipConfig(country_db=path, asn_db=tmp_path / "asn.mmdb")
    enricher = Enricher(config("postfix", geoip), Geo(geoip))
    assert "FR" == enricher(event("192.0.2.1")).country_code
    write_mmdb(path, "GeoLite2-Country", {"192.0.2.0/24": maxmind_country("DE")})
    assert enricher.maybe_reload()
    assert "DE" == enricher(event("192.0.2.1")).country_code
    assert not enricher.maybe_reload()


def test_reload_switches_mode_and_databases(tmp_path: Path) -> None:
    """SIGHUP: a new `[dns] reverse` and new database paths take effect."""
    asn = tmp_path / "asn.mmdb"
    geoip = GeoipConfig(country_db=COUNTRY_DB, asn_db=asn)
    enricher = Enricher(config("postfix", geoip), Geo(geoip))
    assert NOT_AVAILABLE == enricher(event()).asn
    shutil.copyfile(ASN_DB, tmp_path / "asn.tmp")
    os.replace(tmp_path / "asn.tmp", asn)
    asyncio.run(enricher.reload(config("off", geoip)))
    got = enricher(event())
    assert ("OFF", "AS29518") == (got.reverse_dns_status, got.asn)
    asyncio.run(enricher.close())


def test_enrichment_feeds_the_csv_row() -> None:
    """The enricher's output is what a row takes: the MailLogSentinel columns filled."""
    enrich = Enricher(config("postfix"), Geo(GEO))
    ev = event(hostname="mail.example.org")
    row = RowFormat(tz=UTC, date_format="iso", cap=256).fields(ev, enrich(ev))
    assert ["mail.example.org", "OK", "SE", "AS29518", "Bredband2 AB"] == row[4:9]
