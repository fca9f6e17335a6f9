"""A downloaded database unpacked, verified, and only then renamed over the installed one.

Unpacking follows what the provider ships, recognised by content: gzip (DB-IP), a gzipped
tar holding the .mmdb (MaxMind), or a plain .mmdb (IPinfo). Verification, before anything
is replaced: the file opens as an MMDB and its first record decodes (mlsd.enrich.mmdb), its
`database_type` answers the role it is for, it was not built before the installed file,
and a few lookups of well-known addresses answer without touching corruption. Then the
rename: the new file is written beside the old one (same file system), fsynced, renamed
over it, and the directory fsynced; the daemon's `Geo.maybe_reload` sees the new identity.
A symbolic link at the configured path is refused: mlsd did not make it.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final, cast

from maxminddb.errors import InvalidDatabaseError

from mlsd.durable import fsync_dir, write_all
from mlsd.enrich.mmdb import Database, DatabaseUnusable, file_identity
from mlsd.rows import NOT_AVAILABLE
from mlsd.safefs import SHARED_DIR, check_dir, create_temp, make_dir, open_regular

PROBES: Final = (
    "8.8.8.8",
    "1.1.1.1",
    "9.9.9.9",
    "2001:4860:4860::8888",
    # In MaxMind's test databases (the tests serve them): a UK and an Australian network.
    "81.2.69.160",
    "1.128.0.0",
)
"""Addresses every real country and ASN database answers; one answer per role suffices."""
MODE: Final = 0o644
"""GeoIP data is public: readable by the daemon's user whoever installed it."""


class Refused(Exception):
    """Why a downloaded file was not installed (the installed one is kept)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Installed:
    """What now answers at `path`."""

    path: Path
    database_type: str
    built: datetime
    replaced: bool
    """False: the installed file was as new (same build), left as it was."""


def prepare_dir(target: Path, state_dir: Path) -> None:
    """The directory of `target`: created if it is under the state directory, else it must
    exist; either way writable by nobody but mlsd's user or root (mlsd.safefs)."""
    parent = target.parent
    if not parent.exists() and parent.is_relative_to(state_dir):
        make_dir(state_dir, SHARED_DIR, "state directory", top=True)
        make_dir(parent, 0o755, "GeoIP database directory", top=parent.parent != state_dir)
        return
    check_dir(parent, "GeoIP database directory")


def install(download: Path, target: Path, roles: tuple[str, ...], *, limit: int) -> Installed:
    """Unpack `download` beside `target`, verify it for `roles`, rename it over `target`."""
    st = _lstat(target)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise Refused(f"{target} is a symbolic link, which mlsd does not replace: remove it")
    tmp = target.with_name(f".{target.name}.new")
    try:
        _unpack(download, tmp, limit)
        db = _verify(tmp, roles)
        try:
            new_type, new_built = db.database_type, db.build_epoch
        finally:
            db.close()
        old_built = _installed_build(target) if st is not None else None
        if old_built is not None and new_built < old_built:
            raise Refused(
                f"stale: built {_day(new_built)}, older than the installed file ({_day(old_built)})"
            )
        built = datetime.fromtimestamp(new_built, UTC)
        if old_built is not None and new_built == old_built:
            return Installed(path=target, database_type=new_type, built=built, replaced=False)
        os.rename(tmp, target)
        fsync_dir(target.parent)
        return Installed(path=target, database_type=new_type, built=built, replaced=True)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _day(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d")


def _unpack(download: Path, tmp: Path, limit: int) -> None:
    fd = open_regular(download)
    with os.fdopen(fd, "rb") as raw:
        head = raw.read(2)
        raw.seek(0)
        try:
            with _payload(raw, head == b"\x1f\x8b") as src:
                _copy_bounded(src, tmp, limit)
        except (EOFError, OSError, zlib.error, tarfile.TarError) as exc:
            raise Refused(f"truncated or corrupt archive ({exc.__class__.__name__})") from None


@contextlib.contextmanager
def _payload(raw: IO[bytes], gzipped: bool) -> Iterator[IO[bytes]]:
    if not gzipped:
        yield raw
        return
    with gzip.GzipFile(fileobj=raw) as gz:
        block = gz.read(512)
        if len(block) == 512 and block[257:262] == b"ustar":
            raw.seek(0)
            with tarfile.open(fileobj=raw, mode="r:gz") as tar:
                for member in tar:
                    if member.isfile() and member.name.endswith(".mmdb"):
                        extracted = tar.extractfile(member)
                        if extracted is not None:
                            yield extracted
                            return
            raise Refused("the archive holds no .mmdb file")
        gz.seek(0)
        yield cast("IO[bytes]", gz)


def _copy_bounded(src: IO[bytes], tmp: Path, limit: int) -> None:
    try:
        fd = create_temp(tmp, 0o600)
    except OSError as exc:
        raise Refused(f"cannot write {tmp}: {exc.strerror}") from None
    try:
        got = 0
        while chunk := src.read(1 << 16):
            got += len(chunk)
            if got > limit:
                raise Refused(
                    f"unpacks to more than the {limit} bytes allowed ([geoip] max_download)"
                )
            try:
                write_all(fd, chunk)
            except OSError as exc:
                raise Refused(f"cannot write {tmp}: {exc.strerror}") from None
        os.fsync(fd)
        os.fchmod(fd, MODE)
    finally:
        os.close(fd)


def _verify(tmp: Path, roles: tuple[str, ...]) -> Database:
    ident = file_identity(tmp)
    if ident is None:
        raise Refused("the unpacked file vanished")
    try:
        db = Database(tmp, ident)
    except DatabaseUnusable as exc:
        raise Refused(f"not a usable MMDB database: {exc}") from None
    try:
        for role in roles:
            extract = db.country if role == "country" else db.asn
            if extract is None:
                raise Refused(f"wrong database: {db.database_type!r} holds no {role}")
            if not _answers(db, role):
                raise Refused(f"{db.database_type!r} answers none of the test lookups for {role}")
    except BaseException:
        db.close()
        raise
    return db


def _answers(db: Database, role: str) -> bool:
    found = False
    for ip in PROBES:
        try:
            record = db.reader.get(ip)
        except ValueError:
            continue  # an IPv6 probe in an IPv4-only database
        except InvalidDatabaseError as exc:
            raise Refused(f"corrupt search tree or data: {exc}") from None
        if not isinstance(record, dict):
            continue
        if role == "country" and db.country is not None:
            found = found or db.country(record) != NOT_AVAILABLE
        elif db.asn is not None:
            found = found or db.asn(record)[0] != NOT_AVAILABLE
    return found


def _installed_build(target: Path) -> int | None:
    """The build date of the installed file; None when it is not a usable database (then
    anything verified is better)."""
    ident = file_identity(target)
    if ident is None:
        return None
    try:
        db = Database(target, ident)
    except DatabaseUnusable:
        return None
    try:
        return db.build_epoch
    finally:
        db.close()
