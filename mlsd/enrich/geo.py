"""Country and ASN of an IP from MaxMind-format databases (MMDB), reopened when replaced.

Readers are maxminddb's C extension over an mmap (the library's default mode): a lookup is a
few microseconds, cheap enough to run inline for every event.

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

Replacing a database: write the new file next to the old one and rename it over (what
geoipupdate does). `maybe_reload()` compares the file's identity (device, inode, size,
mtime), not its content, and opens the new file; a missing, truncated or corrupt new file
never replaces the working reader and is logged once. Never overwrite a database in place
(`cp new.mmdb GeoLite2-ASN.mmdb`, `>` redirection): the file is mmapped, and a reader whose
pages change or vanish under it is killed by SIGBUS. `cp new.mmdb x.tmp && mv x.tmp
x.mmdb` within one file system is safe.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from mlsd import access, logs
from mlsd.config import GeoipConfig
from mlsd.rows import NOT_AVAILABLE

COUNTRY: Final = "country"
ASN: Final = "asn"

_log = logs.get("mlsd.geo")

Identity = tuple[int, int, int, int]
"""(st_dev, st_ino, st_size, st_mtime_ns): a replaced file differs in at least one."""
CountryOf = Callable[[Mapping[str, Any]], str]
AsnOf = Callable[[Mapping[str, Any]], tuple[str, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class GeoResult:
    """What the databases say about one IP; `N/A` where no database answered."""

    country_code: str = NOT_AVAILABLE
    asn: str = NOT_AVAILABLE
    """`AS29518` form (see the module docstring)."""
    aso: str = NOT_AVAILABLE
    country_source: str = ""
    """`database_type` of the database that gave the country (empty: none did)."""
    asn_source: str = ""
    """`database_type` of the database that gave the ASN (empty: none did)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DbInfo:
    """One role's database, for `mlsd lookup`, status and the report."""

    role: str
    path: Path
    state: str
    """`loaded`; `missing`; `unusable` (not a readable MMDB); `wrong-kind` (no data for role)."""
    database_type: str = ""
    built: datetime | None = None
    served_by: Path | None = None
    """The file that actually answers for this role (another role's, for IPinfo)."""

    def summary(self) -> str:
        """For the report's header: what answers for this role, and how old it is."""
        if self.state != "loaded":
            return f"{self.role}: {self.state} ({self.path})"
        built = self.built.strftime("%Y-%m-%d") if self.built else "unknown date"
        return f"{self.role}: {self.database_type}, built {built} ({self.path.name})"

    def line(self) -> str:
        """One operator-readable line: role, path, type, build date."""
        if self.state != "loaded":
            return f"{self.role}_db={self.path} state={self.state}"
        built = self.built.strftime("%Y-%m-%d") if self.built else "?"
        via = f" via={self.served_by}" if self.served_by not in (None, self.path) else ""
        return (
            f"{self.role}_db={self.path} state=loaded type={self.database_type!r} "
            f"built={built}{via}"
        )


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


class _Db:
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


def _identity(path: Path) -> Identity | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _Source:
    """A configured path: its working database (if any) and the last identity examined."""

    __slots__ = ("db", "path", "seen")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: _Db | None = None
        self.seen: Identity | None = None


class Geo:
    """Country and ASN lookups over the configured databases; see the module docstring."""

    def __init__(self, cfg: GeoipConfig) -> None:
        self._sources: dict[str, _Source] = {}
        self._country: _Db | None = None
        self._asn: _Db | None = None
        self._cfg = cfg
        self._open_all()

    # ---- the hot path

    def lookup(self, ip: str) -> GeoResult:
        """Country, ASN and organisation of `ip` (validated text, IPv4 or IPv6); never raises."""
        cdb, adb = self._country, self._asn
        country = NOT_AVAILABLE
        asn = aso = NOT_AVAILABLE
        csource = asource = ""
        record: Mapping[str, Any] | None = None
        if cdb is not None and cdb.country is not None:
            record = self._get(cdb, ip)
            if record is not None:
                country = cdb.country(record)
                if country != NOT_AVAILABLE:
                    csource = cdb.database_type
        if adb is not None and adb.asn is not None:
            if adb is not cdb:
                record = self._get(adb, ip)
            if record is not None:
                asn, aso = adb.asn(record)
                if asn != NOT_AVAILABLE or aso != NOT_AVAILABLE:
                    asource = adb.database_type
        return GeoResult(
            country_code=country, asn=asn, aso=aso, country_source=csource, asn_source=asource
        )

    def _get(self, db: _Db, ip: str) -> Mapping[str, Any] | None:
        try:
            record = db.reader.get(ip)
        except ValueError:
            # An IPv6 address in an IPv4-only database, or not an IP: no answer, not an error.
            return None
        except InvalidDatabaseError as exc:
            # Corruption past the part checked at open: N/A for the row, one log line per file.
            if not db.failing:
                db.failing = True
                _log.error(
                    "geoip database corrupt, lookups failing",
                    path=str(db.path),
                    error=str(exc),
                    action="replace the file by an atomic rename",
                )
            return None
        return record if isinstance(record, dict) else None

    # ---- lifecycle

    def maybe_reload(self) -> bool:
        """Reopen each database whose file was replaced; True if a reader changed.

        Costs one stat per configured path; meant to be called once per batch.
        """
        changed = False
        for source in list(self._sources.values()):
            ident = _identity(source.path)
            if ident == source.seen:
                continue
            source.seen = ident
            if ident is None:
                if source.db is not None:
                    _log.warning(
                        "geoip database file gone, keeping the loaded copy",
                        path=str(source.path),
                    )
                continue
            if self._open(source, ident, reason="replaced"):
                changed = True
        if changed:
            self._assign_roles(warn=False)
        return changed

    def reload(self, cfg: GeoipConfig) -> None:
        """SIGHUP: take the (possibly new) paths, reopen every database, warn again."""
        old = self._sources
        self._cfg = cfg
        self._sources = {}
        for path in dict.fromkeys((cfg.country_db, cfg.asn_db)):
            source = _Source(path)
            previous = old.get(str(path))
            if previous is not None:
                # A working reader stays until a good replacement is open.
                source.db = previous.db
            self._sources[str(path)] = source
        for key, previous in old.items():
            if key not in self._sources and previous.db is not None:
                previous.db.close()
        for source in self._sources.values():
            ident = _identity(source.path)
            source.seen = ident
            if ident is not None:
                self._open(source, ident, reason="reload")
            elif source.db is not None:
                _log.warning(
                    "geoip database file gone, keeping the loaded copy", path=str(source.path)
                )
        self._assign_roles(warn=True)

    def close(self) -> None:
        """Close every reader (unmaps the files)."""
        for source in self._sources.values():
            if source.db is not None:
                source.db.close()
                source.db = None
        self._country = self._asn = None

    def describe(self) -> list[DbInfo]:
        """Each role's database: path, state, type and build date."""
        out: list[DbInfo] = []
        for role, path, serving in (
            (COUNTRY, self._cfg.country_db, self._country),
            (ASN, self._cfg.asn_db, self._asn),
        ):
            own = self._sources[str(path)]
            if serving is not None:
                out.append(
                    DbInfo(
                        role=role,
                        path=path,
                        state="loaded",
                        database_type=serving.database_type,
                        built=datetime.fromtimestamp(serving.build_epoch, UTC),
                        served_by=serving.path,
                    )
                )
            else:
                if own.seen is None:
                    state = "missing"
                elif own.db is not None:
                    state = "wrong-kind"
                else:
                    state = "unusable"
                out.append(DbInfo(role=role, path=path, state=state))
        return out

    # ---- internals

    def _open_all(self) -> None:
        self._sources = {}
        for path in dict.fromkeys((self._cfg.country_db, self._cfg.asn_db)):
            self._sources[str(path)] = _Source(path)
        for source in self._sources.values():
            ident = _identity(source.path)
            source.seen = ident
            if ident is not None:
                self._open(source, ident, reason="start")
        self._assign_roles(warn=True)

    def _open(self, source: _Source, ident: Identity, *, reason: str) -> bool:
        """Open the file at `source.path`; on success swap it in. Logs either way, once."""
        try:
            db = _Db(source.path, ident)
        except DatabaseUnusable as exc:
            found = access.probe_read(source.path)
            extra = {}
            if found.verdict is access.Verdict.DENIED:
                # The permission, who mlsd is and the fix, as check-config words it.
                extra["fix"] = access.sentence(found, "[geoip]", noun="the GeoIP database")
            _log.warning(
                "geoip database unusable, not loaded",
                path=str(source.path),
                error=str(exc),
                kept="previous" if source.db is not None else "none",
                reason=reason,
                **extra,
            )
            return False
        old, source.db = source.db, db
        if old is not None:
            # Single-threaded: no lookup can be running on the old reader now.
            old.close()
        _log.info(
            "geoip database loaded",
            path=str(source.path),
            type=db.database_type,
            built=datetime.fromtimestamp(db.build_epoch, UTC).strftime("%Y-%m-%d"),
            reason=reason,
        )
        return True

    def _assign_roles(self, *, warn: bool) -> None:
        """Pick the database that answers each role: its own file, else the other one."""
        own_c = self._sources[str(self._cfg.country_db)].db
        own_a = self._sources[str(self._cfg.asn_db)].db
        self._country = _pick(own_c, own_a, lambda d: d.country is not None)
        self._asn = _pick(own_a, own_c, lambda d: d.asn is not None)
        if not warn:
            return
        for role, path, own, serving in (
            (COUNTRY, self._cfg.country_db, own_c, self._country),
            (ASN, self._cfg.asn_db, own_a, self._asn),
        ):
            if serving is not None and serving is not own:
                _log.info("geoip role served by another file", role=role, by=str(serving.path))
            elif serving is None and own is not None:
                _log.warning(
                    "geoip database lacks this role",
                    role=role,
                    path=str(path),
                    type=own.database_type,
                    effect=f"{role} columns are N/A",
                )
            elif serving is None and self._sources[str(path)].seen is None:
                # An unusable file was reported by _open already: one line per problem.
                _log.warning(
                    "geoip database missing",
                    role=role,
                    path=str(path),
                    effect=f"{role} columns are N/A",
                )


def _pick(first: _Db | None, second: _Db | None, serves: Callable[[_Db], bool]) -> _Db | None:
    for db in (first, second):
        if db is not None and serves(db):
            return db
    return None
