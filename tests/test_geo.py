"""GeoIP/ASN: every supported schema, IPv4 and IPv6, missing and corrupt files, replacement."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from mmdb_writer import MmdbU32, MMDBWriter
from netaddr import IPSet

from mlsd.config import GeoipConfig
from mlsd.enrich.geo import Geo, GeoResult
from mlsd.enrich.mmdb import asn_text, schema_of
from mlsd.rows import NOT_AVAILABLE

DATA = Path(__file__).parent / "data" / "geoip"
COUNTRY_DB = DATA / "GeoLite2-Country-Test.mmdb"
CITY_DB = DATA / "GeoIP2-City-Test.mmdb"
ASN_DB = DATA / "GeoLite2-ASN-Test.mmdb"
ISP_DB = DATA / "GeoIP2-ISP-Test.mmdb"
BROKEN_TREE_DB = DATA / "MaxMind-DB-test-broken-search-tree-24.mmdb"
BAD_NODE_COUNT_DB = DATA / "GeoIP2-City-Test-Invalid-Node-Count.mmdb"

IPINFO_RECORDS: dict[str, dict[str, Any]] = {
    "198.51.100.0/24": {
        "country_code": "US",
        "country": "United States",
        "continent_code": "NA",
        "asn": "AS174",
        "as_name": "Cogent Communications",
        "as_domain": "cogentco.com",
    },
    "2001:db8:1::/48": {
        "country_code": "DE",
        "country": "Germany",
        "asn": "AS3320",
        "as_name": "Deutsche Telekom AG",
        "as_domain": "telekom.com",
    },
}


def write_mmdb(
    path: Path,
    database_type: str,
    networks: Mapping[str, Mapping[str, Any]],
    *,
    ip_version: int = 6,
) -> Path:
    """Write an MMDB with mmdb-writer (into a temporary name, renamed into place)."""
    writer = MMDBWriter(
        ip_version=ip_version,
        database_type=database_type,
        languages=["en"],
        description=f"mlsd test fixture ({database_type})",
        ipv4_compatible=ip_version == 6,
    )
    for network, record in networks.items():
        writer.insert_network(IPSet([network]), dict(record))
    tmp = path.with_name(path.name + ".tmp")
    writer.to_db_file(str(tmp))
    os.replace(tmp, path)
    return path


def maxmind_country(code: str) -> dict[str, Any]:
    """A record in the GeoLite2-Country shape."""
    return {"country": {"iso_code": code, "names": {"en": code}}, "continent": {"code": "EU"}}


def maxmind_asn(number: int, org: str) -> dict[str, Any]:
    """A record in the GeoLite2-ASN shape (the number as uint32, as MaxMind stores it)."""
    return {"autonomous_system_number": MmdbU32(number), "autonomous_system_organization": org}


# Read-only: structlog hands out a list of mutable event dicts, which the tests only read.
Captured = Sequence[Mapping[str, Any]]


@pytest.fixture
def logs() -> Iterator[Captured]:
    """Every structlog event emitted during the test."""
    with structlog.testing.capture_logs() as captured:
        yield captured


def events(captured: Captured, name: str) -> list[Mapping[str, Any]]:
    """The captured log events called `name`."""
    return [e for e in captured if e["event"] == name]


def geo(country: Path, asn: Path) -> Geo:
    """A Geo over these two paths."""
    return Geo(GeoipConfig(country_db=country, asn_db=asn))


# ---- the official test databases: known answers


@pytest.mark.parametrize(
    ("ip", "country", "asn", "aso"),
    [
        ("81.2.69.142", "GB", NOT_AVAILABLE, NOT_AVAILABLE),
        ("89.160.20.112", "SE", "AS29518", "Bredband2 AB"),
        ("1.128.0.1", NOT_AVAILABLE, "AS1221", "Telstra Pty Ltd"),
        ("2001:218::1", "JP", NOT_AVAILABLE, NOT_AVAILABLE),
        ("::ffff:81.2.69.142", "GB", NOT_AVAILABLE, NOT_AVAILABLE),
        ("10.0.0.1", NOT_AVAILABLE, NOT_AVAILABLE, NOT_AVAILABLE),
    ],
)
def test_maxmind_test_databases_known_answers(ip: str, country: str, asn: str, aso: str) -> None:
    """GeoLite2-Country + GeoLite2-ASN give the documented answers, IPv4 and IPv6."""
    g = geo(COUNTRY_DB, ASN_DB)
    found = g.lookup(ip)
    assert (country, asn, aso) == (found.country_code, found.asn, found.aso)


def test_sources_name_the_database_that_answered() -> None:
    """Each field says which database type it came from; none when nothing answered."""
    g = geo(COUNTRY_DB, ASN_DB)
    assert GeoResult(
        country_code="SE",
        asn="AS29518",
        aso="Bredband2 AB",
        country_source="GeoLite2-Country",
        asn_source="GeoLite2-ASN",
    ) == g.lookup("89.160.20.112")
    assert ("", "") == (g.lookup("10.0.0.1").country_source, g.lookup("10.0.0.1").asn_source)


def test_city_database_serves_the_country_and_isp_database_the_asn() -> None:
    """GeoIP2-City has the Country schema; GeoIP2-ISP has the ASN fields."""
    g = geo(CITY_DB, ISP_DB)
    assert ("SE", "GeoIP2-City") == (
        g.lookup("89.160.20.112").country_code,
        g.lookup("89.160.20.112").country_source,
    )
    found = g.lookup("1.128.0.1")
    assert ("AS1221", "Telstra Pty Ltd", "GeoIP2-ISP") == (found.asn, found.aso, found.asn_source)


def test_describe_gives_path_type_and_build_date() -> None:
    """`describe()` reports each role's file, its database_type and build date (metadata)."""
    g = geo(COUNTRY_DB, ASN_DB)
    info = {d.role: d for d in g.describe()}
    assert "loaded" == info["country"].state == info["asn"].state
    assert "GeoLite2-Country" == info["country"].database_type
    assert info["asn"].built is not None and info["asn"].built.year >= 2020
    assert info["asn"].line().startswith(f"asn_db={ASN_DB} state=loaded type='GeoLite2-ASN' built=")


# ---- other schemas, written by the tests


def test_dbip_lite_country_and_asn(tmp_path: Path) -> None:
    """DB-IP Lite: its own database_type strings, MaxMind's schema; IPv4 and IPv6."""
    country = write_mmdb(
        tmp_path / "dbip-country-lite.mmdb",
        "DBIP-Country-Lite",
        {"192.0.2.0/24": maxmind_country("FR"), "2001:db8::/32": maxmind_country("NL")},
    )
    asn = write_mmdb(
        tmp_path / "dbip-asn-lite.mmdb",
        "DBIP-ASN-Lite (compat=GeoLite2-ASN)",
        {
            "192.0.2.0/24": maxmind_asn(3215, "Orange S.A."),
            "2001:db8::/32": maxmind_asn(1136, "KPN B.V."),
        },
    )
    g = geo(country, asn)
    assert GeoResult(
        country_code="FR",
        asn="AS3215",
        aso="Orange S.A.",
        country_source="DBIP-Country-Lite",
        asn_source="DBIP-ASN-Lite (compat=GeoLite2-ASN)",
    ) == g.lookup("192.0.2.7")
    v6 = g.lookup("2001:db8::25")
    assert ("NL", "AS1136", "KPN B.V.") == (v6.country_code, v6.asn, v6.aso)


def test_ipinfo_lite_one_file_serves_both_roles(tmp_path: Path) -> None:
    """IPinfo Lite: `country_code`, `asn` "AS174", `as_name`; one file for both paths."""
    db = write_mmdb(tmp_path / "ipinfo_lite.mmdb", "ipinfo lite.mmdb", IPINFO_RECORDS)
    g = geo(db, db)
    assert GeoResult(
        country_code="US",
        asn="AS174",
        aso="Cogent Communications",
        country_source="ipinfo lite.mmdb",
        asn_source="ipinfo lite.mmdb",
    ) == g.lookup("198.51.100.9")
    v6 = g.lookup("2001:db8:1::1")
    assert ("DE", "AS3320", "Deutsche Telekom AG") == (v6.country_code, v6.asn, v6.aso)


def test_ipinfo_in_one_path_also_answers_for_a_missing_other(
    tmp_path: Path, logs: Captured
) -> None:
    """country_db = IPinfo Lite, asn_db missing: the IPinfo file answers both, no warning."""
    db = write_mmdb(tmp_path / "ipinfo_lite.mmdb", "ipinfo lite.mmdb", IPINFO_RECORDS)
    g = geo(db, tmp_path / "absent-asn.mmdb")
    found = g.lookup("198.51.100.9")
    assert ("US", "AS174") == (found.country_code, found.asn)
    assert [] == [e for e in logs if e["log_level"] == "warning"]
    assert "loaded" == {d.role: d for d in g.describe()}["asn"].state


def test_ipinfo_detected_by_shape_when_metadata_says_nothing(tmp_path: Path) -> None:
    """A renamed/rebuilt IPinfo file with a generic database_type is recognised by its records."""
    db = write_mmdb(tmp_path / "renamed.mmdb", "GeoIP", IPINFO_RECORDS)
    found = geo(db, db).lookup("198.51.100.9")
    assert ("US", "AS174", "Cogent Communications") == (found.country_code, found.asn, found.aso)


def test_older_ipinfo_country_and_asn_files(tmp_path: Path) -> None:
    """`ipinfo country.mmdb` (`country` is the code) and `ipinfo asn.mmdb` (`name`)."""
    country = write_mmdb(
        tmp_path / "country.mmdb",
        "ipinfo country.mmdb",
        {"198.51.100.0/24": {"country": "CA", "country_name": "Canada"}},
    )
    asn = write_mmdb(
        tmp_path / "asn.mmdb",
        "ipinfo asn.mmdb",
        {"198.51.100.0/24": {"asn": "AS577", "name": "Bell Canada", "domain": "bell.ca"}},
    )
    found = geo(country, asn).lookup("198.51.100.9")
    assert ("CA", "AS577", "Bell Canada") == (found.country_code, found.asn, found.aso)


def test_ipv4_only_database_answers_na_for_ipv6(tmp_path: Path) -> None:
    """An IPv6 address in an IPv4-only database is simply not found (no exception)."""
    db = write_mmdb(
        tmp_path / "v4.mmdb",
        "DBIP-Country-Lite",
        {"192.0.2.0/24": maxmind_country("FR")},
        ip_version=4,
    )
    g = geo(db, tmp_path / "none.mmdb")
    assert ("FR", NOT_AVAILABLE) == (
        g.lookup("192.0.2.1").country_code,
        g.lookup("2001:db8::1").country_code,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (29518, "AS29518"),
        ("AS174", "AS174"),
        ("as174", "AS174"),
        ("174", "AS174"),
        (0, NOT_AVAILABLE),
        ("", NOT_AVAILABLE),
        ("ASX", NOT_AVAILABLE),
        (None, NOT_AVAILABLE),
        (True, NOT_AVAILABLE),
        ("AS\u0661\u0662", NOT_AVAILABLE),  # Arabic-Indic digits are not an ASN
    ],
)
def test_asn_text(value: object, expected: str) -> None:
    """Every database's ASN becomes `AS<number>`; anything else is N/A."""
    assert expected == asn_text(value)


def test_schema_of_unknown_database_provides_nothing() -> None:
    """A database that is neither country nor ASN (e.g. Anonymous-IP) serves no role."""
    assert (None, None) == schema_of("GeoIP2-Anonymous-IP", {"is_anonymous": True})


# ---- missing and broken files


def test_missing_databases_warn_once_and_give_na(tmp_path: Path, logs: Captured) -> None:
    """Missing files: one warning per role at start, N/A in results, none per lookup."""
    g = geo(tmp_path / "country.mmdb", tmp_path / "asn.mmdb")
    for _ in range(100):
        assert GeoResult() == g.lookup("89.160.20.112")
    g.maybe_reload()
    missing = events(logs, "geoip database missing")
    assert ["country", "asn"] == [e["role"] for e in missing]
    assert ["missing", "missing"] == [d.state for d in g.describe()]


def _truncated(tmp_path: Path) -> Path:
    dst = tmp_path / "truncated.mmdb"
    dst.write_bytes(ASN_DB.read_bytes()[: ASN_DB.stat().st_size // 2])
    return dst


def _garbage(tmp_path: Path) -> Path:
    dst = tmp_path / "garbage.mmdb"
    dst.write_bytes(b"\x00\xff not an mmdb " * 500)
    return dst


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copyfile(src, dst)
    return dst


@pytest.mark.parametrize(
    "make",
    [
        _truncated,
        _garbage,
        lambda tmp: _copy(BROKEN_TREE_DB, tmp),
        lambda tmp: _copy(BAD_NODE_COUNT_DB, tmp),
        lambda tmp: (tmp / "empty.mmdb", (tmp / "empty.mmdb").write_bytes(b""))[0],
    ],
    ids=["truncated", "garbage", "broken-search-tree", "invalid-node-count", "empty"],
)
def test_corrupt_file_at_start_is_refused_once(tmp_path: Path, logs: Captured, make: Any) -> None:
    """A truncated, corrupt or empty file is not loaded: one warning, N/A, `unusable`."""
    bad = make(tmp_path)
    g = geo(COUNTRY_DB, bad)
    assert NOT_AVAILABLE == g.lookup("89.160.20.112").asn
    assert "SE" == g.lookup("89.160.20.112").country_code
    for _ in range(3):
        g.maybe_reload()
    assert [str(bad)] == [e["path"] for e in events(logs, "geoip database unusable, not loaded")]
    assert "unusable" == {d.role: d for d in g.describe()}["asn"].state


# ---- replacement while running


def test_replacement_by_rename_is_picked_up(tmp_path: Path) -> None:
    """geoipupdate's atomic rename: the next lookup after maybe_reload carries the new data."""
    path = write_mmdb(
        tmp_path / "c.mmdb", "GeoLite2-Country", {"192.0.2.0/24": maxmind_country("FR")}
    )
    g = geo(path, tmp_path / "asn.mmdb")
    assert "FR" == g.lookup("192.0.2.1").country_code
    assert not g.maybe_reload()  # unchanged file: nothing to do
    write_mmdb(path, "GeoLite2-Country", {"192.0.2.0/24": maxmind_country("DE")})
    assert g.maybe_reload()
    assert "DE" == g.lookup("192.0.2.1").country_code
    assert not g.maybe_reload()


def test_corrupt_replacement_keeps_the_working_reader_and_is_logged_once(
    tmp_path: Path, logs: Captured
) -> None:
    """A bad new file never replaces a working reader; a later good file does."""
    path = write_mmdb(
        tmp_path / "c.mmdb", "GeoLite2-Country", {"192.0.2.0/24": maxmind_country("FR")}
    )
    g = geo(path, tmp_path / "asn.mmdb")
    bad = _truncated(tmp_path)
    os.replace(bad, path)
    for _ in range(5):
        assert not g.maybe_reload()
        assert "FR" == g.lookup("192.0.2.1").country_code
    assert 1 == len(events(logs, "geoip database unusable, not loaded"))
    write_mmdb(path, "GeoLite2-Country", {"192.0.2.0/24": maxmind_country("IT")})
    assert g.maybe_reload()
    assert "IT" == g.lookup("192.0.2.1").country_code


def test_deleted_file_keeps_the_loaded_copy(tmp_path: Path, logs: Captured) -> None:
    """A database file removed while loaded: the mapped copy keeps answering; one warning."""
    path = write_mmdb(
        tmp_path / "c.mmdb", "GeoLite2-Country", {"192.0.2.0/24": maxmind_country("FR")}
    )
    g = geo(path, tmp_path / "asn.mmdb")
    path.unlink()
    for _ in range(3):
        g.maybe_reload()
        assert "FR" == g.lookup("192.0.2.1").country_code
    assert 1 == len(events(logs, "geoip database file gone, keeping the loaded copy"))


def test_database_appearing_later_is_loaded(tmp_path: Path) -> None:
    """A file missing at start (geoipupdate not run yet) is used once it appears."""
    path = tmp_path / "asn.mmdb"
    g = geo(COUNTRY_DB, path)
    assert NOT_AVAILABLE == g.lookup("1.128.0.1").asn
    shutil.copyfile(ASN_DB, tmp_path / "asn.tmp")
    os.replace(tmp_path / "asn.tmp", path)
    assert g.maybe_reload()
    assert "AS1221" == g.lookup("1.128.0.1").asn


def test_reload_takes_new_paths_and_warns_again(tmp_path: Path, logs: Captured) -> None:
    """SIGHUP: new paths are opened; a still-missing database is warned about again."""
    g = geo(COUNTRY_DB, tmp_path / "asn.mmdb")
    g.reload(GeoipConfig(country_db=CITY_DB, asn_db=tmp_path / "asn.mmdb"))
    assert "GeoIP2-City" == g.lookup("81.2.69.142").country_source
    assert 2 == len(events(logs, "geoip database missing"))
    g.reload(GeoipConfig(country_db=CITY_DB, asn_db=ASN_DB))
    assert "AS29518" == g.lookup("89.160.20.112").asn
    g.close()
    assert GeoResult() == g.lookup("89.160.20.112")


def test_wrong_kind_of_database_is_reported(tmp_path: Path, logs: Captured) -> None:
    """country_db pointing at an ASN database: warned, and `describe()` says so."""
    g = geo(ASN_DB, tmp_path / "none.mmdb")
    info = {d.role: d for d in g.describe()}
    # The ASN file does answer for the ASN role (the other path is missing).
    assert ("wrong-kind", "loaded") == (info["country"].state, info["asn"].state)
    assert ["country"] == [e["role"] for e in events(logs, "geoip database lacks this role")]


def test_corruption_found_at_lookup_gives_na_and_one_error(tmp_path: Path, logs: Captured) -> None:
    """Damage past what the open-time check reads: N/A for those IPs, one error line."""
    path = write_mmdb(
        tmp_path / "c.mmdb",
        "GeoLite2-Country",
        {
            "192.0.2.0/24": maxmind_country("FR"),
            "198.51.100.0/24": {"country": {"iso_code": "QQ", "names": {"en": "SECONDRECORD"}}},
        },
    )
    data = bytearray(path.read_bytes())
    at = data.find(b"SECONDRECORD")
    data[at - 1 : at + 1] = b"\x00\xff"  # an extended type that does not exist
    path.write_bytes(bytes(data))
    g = geo(path, tmp_path / "asn.mmdb")
    assert ["FR", NOT_AVAILABLE, NOT_AVAILABLE, "FR"] == [
        g.lookup(ip).country_code
        for ip in ("192.0.2.1", "198.51.100.1", "198.51.100.2", "192.0.2.1")
    ]
    assert 1 == len(events(logs, "geoip database corrupt, lookups failing"))
