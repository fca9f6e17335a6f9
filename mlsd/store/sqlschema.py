"""The SQLite store's schema: its versions, and the upgrade of an older file in place.

Version 1 (issue 19): `mlsd_events` and `mlsd_positions`. Version 2 (issue 20) adds the
successful logins: `mlsd_logins`, indexed on `time` and on (`user`, `time`), and their own
position, `mlsd_login_positions`, so the two journals ship independently. Version 3 (the
report's figures in SQL, issue 19) widens the time index to (`time`, `attempts`), so counts
per day and per hour read the index alone, and adds (`ip`, `time`), so which of a day's
addresses were seen before is a lookup per address, not a scan of the 30 days before. An
older file is upgraded in place, in one transaction (its events stay; from version 1 the
logins are shipped from the logins CSV's first row, since it holds no position for them). A
newer version than this mlsd knows is an error naming both versions; a file whose tables are
not those of its version is damaged (moved aside and rebuilt by the caller).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Final

from mlsd.errors import StateError

SCHEMA_VERSION: Final = 3

V1: Final = """
CREATE TABLE mlsd_schema (version INTEGER NOT NULL);
CREATE TABLE mlsd_events (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    server TEXT NOT NULL,
    time INTEGER NOT NULL,
    utc_offset INTEGER NOT NULL,
    ip TEXT NOT NULL,
    user TEXT NOT NULL,
    hostname TEXT NOT NULL,
    reverse_dns_status TEXT NOT NULL,
    country_code TEXT NOT NULL,
    asn INTEGER,
    aso TEXT NOT NULL,
    service TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    attempts INTEGER NOT NULL
);
CREATE INDEX mlsd_events_time ON mlsd_events (time);
CREATE TABLE mlsd_positions (
    node TEXT PRIMARY KEY,
    csv_dev INTEGER NOT NULL,
    csv_ino INTEGER NOT NULL,
    csv_offset INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
"""
V2: Final = """
CREATE TABLE mlsd_logins (
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    server TEXT NOT NULL,
    time INTEGER NOT NULL,
    utc_offset INTEGER NOT NULL,
    ip TEXT NOT NULL,
    user TEXT NOT NULL,
    hostname TEXT NOT NULL,
    country_code TEXT NOT NULL,
    asn INTEGER,
    aso TEXT NOT NULL,
    service TEXT NOT NULL,
    mechanism TEXT NOT NULL,
    event TEXT NOT NULL,
    recipients INTEGER NOT NULL
);
CREATE INDEX mlsd_logins_time ON mlsd_logins (time);
CREATE INDEX mlsd_logins_user_time ON mlsd_logins (user, time);
CREATE TABLE mlsd_login_positions (
    node TEXT PRIMARY KEY,
    csv_dev INTEGER NOT NULL,
    csv_ino INTEGER NOT NULL,
    csv_offset INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    kept_from INTEGER NOT NULL DEFAULT 0
);
"""
"""`kept_from`: rows with an earlier `time` may have been deleted by retention
(`[sentinel] keep_days`); from it on the table holds every shipped row."""
V3: Final = """
DROP INDEX mlsd_events_time;
CREATE INDEX mlsd_events_time ON mlsd_events (time, attempts);
CREATE INDEX mlsd_events_ip ON mlsd_events (ip, time);
"""

TABLES_V1: Final = frozenset({"mlsd_schema", "mlsd_events", "mlsd_positions"})
TABLES: Final = TABLES_V1 | {"mlsd_logins", "mlsd_login_positions"}

# Constant text only (the versions are ours): nothing from outside reaches these scripts.
_CREATE: Final = (
    f"BEGIN IMMEDIATE;{V1}{V2}{V3}INSERT INTO mlsd_schema VALUES ({SCHEMA_VERSION});COMMIT;"  # noqa: S608
)
_UPGRADES: Final = {
    1: f"BEGIN IMMEDIATE;{V2}{V3}UPDATE mlsd_schema SET version = 3;COMMIT;",  # noqa: S608
    2: f"BEGIN IMMEDIATE;{V3}UPDATE mlsd_schema SET version = 3;COMMIT;",  # noqa: S608
}


class Damaged(Exception):
    """The file is not a store this mlsd can use as it is (the reason is the message)."""


def ensure(db: sqlite3.Connection, path: Path) -> int | None:
    """Create the schema in an empty file, or upgrade an older one in place; the version
    the file was at when it was upgraded (None when nothing was done, or it was new).

    Raises Damaged (tables missing or not mlsd's), StateError (a newer schema)."""
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    ours = names & TABLES
    if not ours:
        if names:
            raise Damaged("its tables are not mlsd's")
        _script(db, _CREATE)
        return None
    if "mlsd_schema" not in ours:
        raise Damaged("its mlsd_schema table is missing")
    row = db.execute("SELECT max(version) FROM mlsd_schema").fetchone()
    version = row[0] if row else None
    if not isinstance(version, int):
        raise Damaged("its mlsd_schema table holds no version")
    if version < 1:
        raise Damaged(f"its mlsd_schema table holds version {version}")
    if version > SCHEMA_VERSION:
        raise StateError(
            f"{path}: the store's schema is version {version}, newer than version "
            f"{SCHEMA_VERSION} that this mlsd knows: a newer mlsd wrote it; run that one, "
            "or move the file aside to rebuild it from the CSV"
        )
    want = TABLES_V1 if version == 1 else TABLES
    if ours != want:
        raise Damaged(f"its table {sorted(want ^ ours)[0]} is missing or unexpected")
    if version < SCHEMA_VERSION:
        _script(db, _UPGRADES[version])
        return version
    return None


def _script(db: sqlite3.Connection, script: str) -> None:
    """One transaction in the script itself (executescript commits any pending one)."""
    try:
        db.executescript(script)
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise
