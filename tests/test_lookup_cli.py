"""`mlsd lookup IP…` as an operator runs it: a real process, real databases, a real DNS server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dnskit import DnsServer, ptr_name
from tests.test_geo import ASN_DB, COUNTRY_DB, IPINFO_RECORDS, write_mmdb


def mlsd(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m mlsd ARGS` (bounded wait), text output."""
    return subprocess.run(
        [sys.executable, "-m", "mlsd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    """A DNS server on loopback that knows one PTR and ignores another IP."""
    server = DnsServer().start()
    server.add_ptr("89.160.20.112", "h112.bredband2.example")
    server.silent.add(ptr_name("1.128.0.1"))
    yield server
    server.stop()


def write_config(tmp_path: Path, dns: DnsServer, country: Path, asn: Path) -> Path:
    """A config file naming the databases and the loopback resolver."""
    conf = tmp_path / "mlsd.conf"
    conf.write_text(
        f"[geoip]\ncountry_db = {country}\nasn_db = {asn}\n"
        f"[dns]\nservers = {dns.address}\ntimeout = 0.5\n"
    )
    return conf


def test_lookup_prints_country_asn_organisation_ptr_and_sources(
    tmp_path: Path, dns: DnsServer
) -> None:
    """Each IP: country, ASN, organisation, PTR with its status, and which database answered."""
    conf = write_config(tmp_path, dns, COUNTRY_DB, ASN_DB)
    done = mlsd("lookup", "-c", str(conf), "89.160.20.112", "2001:218::1", "1.128.0.1")
    assert 0 == done.returncode, done.stderr
    blocks = done.stdout.split("\n\n")
    header, se, jp, au = blocks
    assert header.startswith(f"country_db={COUNTRY_DB} state=loaded type='GeoLite2-Country'")
    assert f"asn_db={ASN_DB} state=loaded type='GeoLite2-ASN'" in header
    assert (
        "89.160.20.112\n"
        f"  country       SE  (GeoLite2-Country, {COUNTRY_DB})\n"
        f"  asn           AS29518  (GeoLite2-ASN, {ASN_DB})\n"
        "  organisation  Bredband2 AB\n"
        "  ptr           h112.bredband2.example (OK; dns reverse = postfix)"
    ) == se
    assert "  country       JP  (GeoLite2-Country" in jp
    assert "  ptr           unknown (NONE;" in jp
    assert "  asn           AS1221  (GeoLite2-ASN" in au
    assert "  organisation  Telstra Pty Ltd" in au
    assert "  ptr           unknown (TIMEOUT;" in au


def test_lookup_with_ipinfo_lite_for_both_roles(tmp_path: Path, dns: DnsServer) -> None:
    """One IPinfo Lite file in both paths answers everything and is named as the source."""
    db = write_mmdb(tmp_path / "ipinfo_lite.mmdb", "ipinfo lite.mmdb", IPINFO_RECORDS)
    conf = write_config(tmp_path, dns, db, db)
    done = mlsd("lookup", "-c", str(conf), "198.51.100.9")
    assert 0 == done.returncode, done.stderr
    assert f"  country       US  (ipinfo lite.mmdb, {db})" in done.stdout
    assert f"  asn           AS174  (ipinfo lite.mmdb, {db})" in done.stdout
    assert "  organisation  Cogent Communications" in done.stdout


def test_lookup_with_missing_databases_says_so(tmp_path: Path, dns: DnsServer) -> None:
    """Missing files: N/A answers, `state=missing`, warnings on stderr, exit 0."""
    conf = write_config(tmp_path, dns, tmp_path / "c.mmdb", tmp_path / "a.mmdb")
    done = mlsd("lookup", "-c", str(conf), "89.160.20.112")
    assert 0 == done.returncode, done.stderr
    assert f"country_db={tmp_path / 'c.mmdb'} state=missing" in done.stdout
    assert "  country       N/A  (no database answered)" in done.stdout
    assert 2 == done.stderr.count("geoip database missing")


def test_lookup_refuses_what_is_not_an_ip(tmp_path: Path, dns: DnsServer) -> None:
    """A typo is a usage error (exit 2) naming the bad argument; nothing is looked up."""
    conf = write_config(tmp_path, dns, COUNTRY_DB, ASN_DB)
    done = mlsd("lookup", "-c", str(conf), "89.160.20.112", "mail.example.org")
    assert (2, "") == (done.returncode, done.stdout)
    assert "'mail.example.org' is not an IPv4 or IPv6 address" in done.stderr
    assert 0 == dns.total()


def test_lookup_with_a_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    """An invalid [dns] key value: exit 2, the message names section and key."""
    conf = tmp_path / "mlsd.conf"
    conf.write_text("[dns]\nreverse = maybe\n")
    done = mlsd("lookup", "-c", str(conf), "192.0.2.1")
    assert 2 == done.returncode
    assert "[dns] reverse = 'maybe': expected one of: postfix, lookup, off" in done.stderr
