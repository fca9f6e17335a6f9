"""Helpers for the event store's tests: a CSV of rows as csvlog writes them, its rows back."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path

from mlsd.enrich.postfix import postfix_reverse
from mlsd.ingest.csvlog import RowFormat
from mlsd.rows import (
    COLUMNS,
    HEADER,
    AuthFailure,
    Enrichment,
    decode_row,
    encode_rows,
    split_cells,
)
from mlsd.store.contract import Batch, LoginRow, Position, Row, StoredRow
from mlsd.store.journals import LOGINS_HEADER
from mlsd.store.rowmap import login_row, stored_row
from mlsd.store.sqlite import SqliteStore


def events(n: int, *, seed: int = 1, start: datetime | None = None) -> list[AuthFailure]:
    """`n` varied failures, a few seconds apart (hostile cells included)."""
    rnd = random.Random(seed)
    t = start or datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
    users = ["admin", "info@example.org", 'x";y', "=cmd", "ü\tber", "", "a;b"]
    out = []
    for _ in range(n):
        t += timedelta(seconds=rnd.randint(0, 90))
        out.append(
            AuthFailure(
                time=t,
                server=rnd.choice(["mx1", "mx2", ""]),
                service=rnd.choice(["smtp", "imap", "submission"]),
                mechanism=rnd.choice(["LOGIN", "PLAIN", ""]),
                hostname=rnd.choice(["unknown", "scanner.example.net", ""]),
                ip=f"192.0.2.{rnd.randint(1, 254)}",
                user=rnd.choice([*users, None]),
                reason="x",
                attempts=rnd.choice([1, 1, 1, 3]),
            )
        )
    return out


def enrich(ev: AuthFailure) -> Enrichment:
    """Postfix's hostname, and an ASN for about half the addresses (the rest N/A)."""
    base = postfix_reverse(ev)
    if sum(ev.ip.encode()) % 2:
        return base._replace(country_code="NL", asn="AS64500", aso="Example; Net")
    return base


def encode(evs: list[AuthFailure], tz: tzinfo = UTC, date_format: str = "iso") -> bytes:
    """The rows csvlog would append for these events."""
    return RowFormat(tz=tz, date_format=date_format, cap=256).encode(evs, enrich)


def write_csv(path: Path, evs: list[AuthFailure], **kw: object) -> None:
    """A new CSV (header and rows), mode 0640."""
    path.write_bytes(HEADER + encode(evs, **kw))  # type: ignore[arg-type]
    os.chmod(path, 0o640)


def sqlite_of(csv: Path, path: Path, tz: tzinfo = UTC) -> Path:
    """A SQLite store at `path` holding every row of `csv`, as the daemon's store would
    (`tz`: the zone of MailLogSentinel-format dates)."""
    st = os.stat(csv)
    store = SqliteStore(path)
    store.open("mx1")
    first = Position(st.st_dev, st.st_ino, len(HEADER))
    store.append("mx1", Batch(csv_rows(csv, tz), first, position(csv)))
    store.close()
    return path


def append_csv(path: Path, evs: list[AuthFailure]) -> None:
    """More rows at the end."""
    with open(path, "ab") as fh:
        fh.write(encode(evs))


def csv_rows(path: Path, tz: tzinfo = UTC, upto: int | None = None) -> list[StoredRow]:
    """The CSV's rows (up to byte `upto`) as the store should hold them."""
    data = path.read_bytes()[len(HEADER) : upto]
    out = []
    for line in data.decode().split("\n"):
        cells = decode_row(line) if line else None
        if cells is not None:
            out.append(stored_row(cells, tz))
    return out


def position(path: Path, offset: int | None = None) -> Position:
    """The position of `path` at `offset` (its end by default)."""
    st = os.stat(path)
    return Position(st.st_dev, st.st_ino, st.st_size if offset is None else offset)


def multiset(rows: Sequence[Row]) -> Counter[Row]:
    """Rows as a multiset: exactly-once compares these, not lengths."""
    return Counter(rows)


# ---- the logins CSV (issue 20)

LOGIN_USERS = ["alice@example.org", "bob", 'x";y', "=cmd", "a;b", "ü\tber", ""]


def login_cells(n: int, *, seed: int = 1, start: datetime | None = None) -> list[list[str]]:
    """`n` varied logins CSV rows as cells (LOGIN_COLUMNS order), seconds to minutes apart:
    hostile cells included, submissions with recipients, N/A networks."""
    rnd = random.Random(seed)
    t = start or datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
    out = []
    for _ in range(n):
        t += timedelta(seconds=rnd.randint(0, 600))
        submit = rnd.random() < 0.3
        asn = rnd.choice(["AS64500", "N/A", "AS3320"])
        out.append(
            [
                rnd.choice(["mx1", "imap1", ""]),
                t.isoformat(timespec="seconds"),
                f"198.51.100.{rnd.randint(1, 254)}",
                rnd.choice(LOGIN_USERS),
                rnd.choice(["", "client.example.net", "a;b"]),
                "N/A" if asn == "N/A" else rnd.choice(["DE", "FR", "SE"]),
                asn,
                "N/A" if asn == "N/A" else 'Example "Net"; GmbH',
                "smtp" if submit else rnd.choice(["imap", "pop3", "submission"]),
                rnd.choice(["PLAIN", "LOGIN", ""]),
                "submit" if submit else "login",
                str(rnd.randint(1, 50)) if submit else "0",
            ]
        )
    return out


def write_logins(path: Path, cells: list[list[str]]) -> None:
    """A new logins CSV (header and rows), mode 0640."""
    path.write_bytes(LOGINS_HEADER + encode_rows(cells))
    os.chmod(path, 0o640)


def append_logins(path: Path, cells: list[list[str]]) -> None:
    """More logins at the end."""
    with open(path, "ab") as fh:
        fh.write(encode_rows(cells))


def login_rows(path: Path, tz: tzinfo = UTC, upto: int | None = None) -> list[LoginRow]:
    """The logins CSV's rows (up to byte `upto`) as the store should hold them."""
    data = path.read_bytes()[len(LOGINS_HEADER) : upto]
    out = []
    for line in data.decode().split("\n"):
        cells = split_cells(line) if line else None
        if cells:
            out.append(login_row(cells, tz))
    return out


def edit_row(csv: Path, nth: int, **cells: str) -> int:
    """Edit the CSV by hand, as an admin might (or a damaged disk): in its `nth` row
    without quotes, the named columns get these texts. The row's place among all rows."""
    lines = csv.read_bytes().split(b"\n")
    at = [i for i in range(1, len(lines)) if lines[i] and b'"' not in lines[i]][nth]
    row = lines[at].decode().split(";")
    for column, text in cells.items():
        row[COLUMNS.index(column)] = text
    lines[at] = ";".join(row).encode()
    csv.write_bytes(b"\n".join(lines))
    return at - 1


def writers(db: Path) -> list[int]:
    """The pids of the writer processes of the store at `db` (from /proc: any parent)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        if b"mlsd.store.writer" in argv and os.fsencode(db.absolute()) in argv:
            found.append(int(entry.name))
    return found


@contextmanager
def connected(db: Path) -> Iterator[SqliteStore]:
    """The store at `db` as it is, read as an admin's `sqlite3` would (a plain connection,
    nothing created or moved), closed after the block."""
    store = SqliteStore(db)
    store.connect()
    try:
        yield store
    finally:
        store.close()
