"""Country and ASN of an IP from MaxMind-format databases (MMDB), reopened when replaced.

`Geo` answers each role (country, ASN) from its configured file, or from the other role's
file when that one holds both (IPinfo); which databases are supported and how their
records are read is `mlsd.enrich.mmdb`'s job.

Replacing a database: write the new file next to the old one and rename it over (what
geoipupdate does). `maybe_reload()` compares the file's identity (device, inode, size,
mtime), not its content, and opens the new file; a missing, truncated or corrupt new file
never replaces the working reader and is logged once. Never overwrite a database in place
(`cp new.mmdb GeoLite2-ASN.mmdb`, `>` redirection): the file is mmapped, and a reader whose
pages change or vanish under it is killed by SIGBUS. `cp new.mmdb x.tmp && mv x.tmp
x.mmdb` within one file system is safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from maxminddb.errors import InvalidDatabaseError

from mlsd import access, logs
from mlsd.config import GeoipConfig
from mlsd.enrich.mmdb import Database, DatabaseUnusable, Identity, file_identity
from mlsd.rows import NOT_AVAILABLE

COUNTRY: Final = "country"
ASN: Final = "asn"

_log = logs.get("mlsd.geo")


@dataclass(frozen=True, slots=True, kw_only=True)
class GeoResult:
    """What the databases say about one IP; `N/A` where no database answered."""

    country_code: str = NOT_AVAILABLE
    asn: str = NOT_AVAILABLE
    """`AS29518` form (see mlsd.enrich.mmdb)."""
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


class _Source:
    """A configured path: its working database (if any) and the last identity examined."""

    __slots__ = ("db", "path", "seen")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db: Database | None = None
        self.seen: Identity | None = None


class Geo:
    """Country and ASN lookups over the configured databases; see the module docstring."""

    def __init__(self, cfg: GeoipConfig) -> None:
        self._sources: dict[str, _Source] = {}
        self._country: Database | None = None
        self._asn: Database | None = None
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

    def _get(self, db: Database, ip: str) -> Mapping[str, Any] | None:
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
            ident = file_identity(source.path)
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
            ident = file_identity(source.path)
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
            ident = file_identity(source.path)
            source.seen = ident
            if ident is not None:
                self._open(source, ident, reason="start")
        self._assign_roles(warn=True)

    def _open(self, source: _Source, ident: Identity, *, reason: str) -> bool:
        """Open the file at `source.path`; on success swap it in. Logs either way, once."""
        try:
            db = Database(source.path, ident)
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


def _pick(
    first: Database | None, second: Database | None, serves: Callable[[Database], bool]
) -> Database | None:
    for db in (first, second):
        if db is not None and serves(db):
            return db
    return None
