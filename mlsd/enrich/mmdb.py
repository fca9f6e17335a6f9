"""One MMDB file: opened, checked, and its records read as a country and an ASN.

Readers are maxminddb's C extension over an mmap (the library's default mode): a lookup is a
few microseconds, cheap enough to run inline for every event. A file is checked when it is
opened (its metadata, and its first record decodes), so a truncated or corrupt file is
refused then, not at the first lookup.

Supported databases, recognised from their own metadata (`database_type`), and from the
shape of their records when the metadata says nothing useful:

- GeoLite2/GeoIP2 Country and City, DB-IP Lite Country and City (`DBIP-Country-Lite`,
  `DBIP-City-Lite`, same schema): `country.iso_code` (`registered_country` when a network
  has no `country`, e.g. some anycast and satellite ranges).
- GeoLite2/GeoIP2 ASN, DB-IP ASN Lite (`DBIP-ASN-Lite (compat=GeoLite2-ASN)`), GeoIP2 ISP:
  `autonomous_system_number`, `autonomous_system_organization`.
- IPinfo (`ipinfo lite.mmdb` and the older `ipinfo country_asn.mmdb`, `ipinfo country.mmdb`,
  `ipinfo asn.mmdb`): `country_code` (or `country`), `asn` such as `AS174`, `as_name` (or
  `name`). One such file may serve both roles: set `country_db` and `asn_db` to it, or set
  one of them and leave the other missing.

The `asn` column is written `AS29518`, whatever the database stores (MaxMind and DB-IP: the
integer 29518; IPinfo: the string "AS29518"). That is the form IPinfo's asn.csv used, so
MailLogSentinel's CSV had it and its users' scripts keep working; it is also the form whois,
RIR records and PeeringDB use, and it cannot be mistaken for a count in a spreadsheet.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from mlsd.rows import NOT_AVAILABLE

Identity = tuple[int, int, int, int]
"""(st_dev, st_ino, st_size, st_mtime_ns): a replaced file differs in at least one."""
CountryOf = Callable[[Mapping[str, Any]], str]
AsnOf = Callable[[Mapping[str, Any]], tuple[str, str]]


class DatabaseUnusable(Exception):
    """A file that exists but cannot be used: not an MMDB, truncated, corrupt, wrong kind."""


def asn_text(value: object) -> str:
    """An ASN in `AS29518` form from 29518, "29518", "AS29518" or "as29518"; N/A otherwise."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"AS{value}"
    if isinstance(value, str):
        digits = value[2:] if value[:2].upper() == "AS" else value
        if digits.isdigit() and digits.isascii() and int(digits) > 0:
            return f"AS{int(digits)}"
    return NOT_AVAILABLE


def _text(value: object) -> str:
    return value if isinstance(value, str) and value else NOT_AVAILABLE


def _country_maxmind(record: Mapping[str, Any]) -> str:
    for key in ("country", "registered_country"):
        sub = record.get(key)
        if isinstance(sub, dict):
            code = sub.get("iso_code")
            if isinstance(code, str) and code:
                return code
    return NOT_AVAILABLE


def _asn_maxmind(record: Mapping[str, Any]) -> tuple[str, str]:
    return (
        asn_text(record.get("autonomous_system_number")),
        _text(record.get("autonomous_system_organization")),
    )


def _ipinfo_country(key: str) -> CountryOf:
    def country(record: Mapping[str, Any]) -> str:
        return _text(record.get(key))

    return country


def _ipinfo_asn(name_key: str) -> AsnOf:
    def asn(record: Mapping[str, Any]) -> tuple[str, str]:
        return asn_text(record.get("asn")), _text(record.get(name_key))

    return asn


def schema_of(
    database_type: str, sample: Mapping[str, Any] | None
) -> tuple[CountryOf | None, AsnOf | None]:
    """The extractors a database provides: (country, asn), either None when not provided.

    The metadata decides first; a record's shape decides when the type is unknown (a
    private build, a renamed IPinfo file) and tells which IPinfo variant this is.
    """
    kind = database_type.lower()
    shape = sample or {}
    if "ipinfo" in kind or "country_code" in shape or "as_name" in shape:
        country: CountryOf | None = None
        if "country_code" in shape:
            country = _ipinfo_country("country_code")
        elif isinstance(shape.get("country"), str):
            country = _ipinfo_country("country")
        asn: AsnOf | None = None
        if "asn" in shape:
            asn = _ipinfo_asn("as_name" if "as_name" in shape or "name" not in shape else "name")
        return country, asn
    if "asn" in kind or kind.endswith("-isp") or "autonomous_system_number" in shape:
        return None, _asn_maxmind
    if any(k in kind for k in ("country", "city", "enterprise")) or "country" in shape:
        return _country_maxmind, None
    return None, None


class Database:
    """One open database file and how to read it."""

    __slots__ = (
        "asn",
        "build_epoch",
        "country",
        "database_type",
        "failing",
        "identity",
        "path",
        "reader",
    )

    def __init__(self, path: Path, identity: Identity) -> None:
        try:
            reader = maxminddb.open_database(str(path))
        except (OSError, ValueError, InvalidDatabaseError) as exc:
            raise DatabaseUnusable(str(exc) or exc.__class__.__name__) from None
        try:
            meta = reader.metadata()
            sample = _first_record(reader)
            country, asn = schema_of(str(meta.database_type), sample)
            if country is None and asn is None:
                raise DatabaseUnusable(
                    f"database_type {meta.database_type!r} holds neither a country nor an ASN"
                )
        except BaseException:
            reader.close()
            raise
        self.path = path
        self.identity = identity
        self.reader = reader
        self.database_type = str(meta.database_type)
        self.build_epoch = int(meta.build_epoch)
        self.country = country
        self.asn = asn
        self.failing = False
        # Set when a lookup hits corruption: reported once, not per event.

    def close(self) -> None:
        self.reader.close()


def _first_record(reader: maxminddb.Reader) -> Mapping[str, Any] | None:
    """The first record in the tree: proves the data section decodes, and shows its shape."""
    try:
        for _network, record in reader:
            if isinstance(record, dict):
                return record
            break
    except (InvalidDatabaseError, ValueError, RuntimeError, OSError) as exc:
        raise DatabaseUnusable(f"corrupt data section: {exc}") from None
    return None


def file_identity(path: Path) -> Identity | None:
    """What `Geo.maybe_reload` compares; None when the file cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
