"""The CSV: its columns, how an attacker-chosen field is made harmless, and the append-only file.

The first nine columns are MailLogSentinel's, in its order, so its users' scripts keep
working. Usernames and hostnames come from attackers and the file is mailed to admins who
open it in spreadsheets: every field is stripped of control characters, capped in length
and kept from starting a formula. Every row is exactly one line (no raw newline can reach a
field), which lets recovery cut the file back at a byte offset and the report seek by line.
"""

from __future__ import annotations

import csv
import io
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Final

from mlsd.durable import write_all
from mlsd.errors import StateError
from mlsd.parse import AuthFailure

COLUMNS: Final = (
    # MailLogSentinel's columns, in its order:
    "server",
    "date",
    "ip",
    "user",
    "hostname",
    "reverse_dns_status",
    "country_code",
    "asn",
    "aso",
    # mlsd's additions:
    "service",
    "mechanism",
    "attempts",
)
DELIMITER: Final = ";"
HEADER: Final = (DELIMITER.join(COLUMNS) + "\n").encode()
NOT_AVAILABLE: Final = "N/A"
FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750

# C0 and C1 controls, DEL, and the Unicode bidi overrides that can make a cell display
# something other than what it holds.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Spreadsheets evaluate a cell that starts with one of these as a formula.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def _escape_char(m: re.Match[str]) -> str:
    code = ord(m[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(line: bytes, limit: int = 400) -> str:
    """A raw log line for a terminal or a log: decoded, the characters `clean_field`
    neutralises shown as `\\xNN`/`\\uNNNN`, cut at `limit` characters. Log lines hold
    attacker-chosen bytes (usernames, HELO names)."""
    text = line.rstrip(b"\r\n").decode("utf-8", "replace")
    if len(text) > limit:
        text = text[:limit] + "…"
    return _UNSAFE.sub(_escape_char, text)


def clean_field(value: str, cap: int) -> str:
    """Make one attacker-influenced value safe for a CSV cell (and a log line).

    Control characters become visible `\\xNN` text, the value is capped at `cap`
    characters (marked with `…`), and a value that would start a formula gets a
    leading `'`, which spreadsheets show as text.
    """
    # Fast path: most values are short printable ASCII (isprintable excludes controls).
    if value.isascii() and value.isprintable():
        if len(value) <= cap and not value.startswith(_FORMULA_START):
            return value
    elif _UNSAFE.search(value):
        value = _UNSAFE.sub(_escape_char, value)
    if len(value) > cap:
        value = value[: cap - 1] + "…"
    if value.startswith(_FORMULA_START):
        value = "'" + value
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Enrichment:
    """What mlsd adds to an event: reverse DNS, country and network owner."""

    hostname: str
    reverse_dns_status: str
    country_code: str = NOT_AVAILABLE
    asn: str = NOT_AVAILABLE
    aso: str = NOT_AVAILABLE


def postfix_reverse(event: AuthFailure) -> Enrichment:
    """Reverse DNS as Postfix already resolved it (`host[IP]`; `unknown` = no name).

    OK: Postfix logged a name. NONE: Postfix found none (`unknown`). N/A: the line carries
    no hostname at all (Dovecot's login lines).
    """
    if not event.hostname:
        return Enrichment(hostname="", reverse_dns_status=NOT_AVAILABLE)
    if event.hostname == "unknown":
        return Enrichment(hostname="unknown", reverse_dns_status="NONE")
    return Enrichment(hostname=event.hostname, reverse_dns_status="OK")


def no_reverse(event: AuthFailure) -> Enrichment:
    """`[dns] reverse = off`: no hostname in the rows."""
    del event
    return Enrichment(hostname="", reverse_dns_status="OFF")


def format_date(event: AuthFailure, tz: tzinfo, date_format: str) -> str:
    """The `date` column: ISO 8601 with offset, or MailLogSentinel's `dd/mm/YYYY HH:MM`."""
    when = event.time.astimezone(tz)
    if date_format == "maillogsentinel":
        return when.strftime("%d/%m/%Y %H:%M")
    return when.isoformat(timespec="seconds")


def row_fields(
    event: AuthFailure, extra: Enrichment, *, tz: tzinfo, date_format: str, cap: int
) -> list[str]:
    """One row's cells, in COLUMNS order; every value that comes from outside is cleaned.

    The date, the validated IP, the status and the count are mlsd's own text.
    """
    return [
        clean_field(event.server, cap),
        format_date(event, tz, date_format),
        event.ip,
        clean_field(event.user or "", cap),
        clean_field(extra.hostname, cap),
        extra.reverse_dns_status,
        clean_field(extra.country_code, cap),
        clean_field(extra.asn, cap),
        clean_field(extra.aso, cap),
        clean_field(event.service, cap),
        clean_field(event.mechanism, cap),
        str(event.attempts),
    ]


def encode_rows(rows: Iterable[Sequence[str]]) -> bytes:
    """Rows as RFC 4180 `;`-separated text (LF line ends), ready for one append."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=DELIMITER, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


class CsvJournal:
    """The CSV file, written only by appending whole rows with `os.write` on O_APPEND.

    `os.write` either reaches the kernel or raises: nothing sits in a Python buffer to be
    lost on kill -9. `sync()` is `fdatasync`, which the checkpoint waits for.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    def open(self) -> None:
        """Open (creating file and directory, mode 0640/0750) and check the header."""
        self.path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, FILE_MODE)
        except OSError as exc:
            raise StateError(
                f"{self.path}: cannot open the CSV for writing: {exc.strerror}"
            ) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise StateError(f"{self.path}: the CSV path is not a regular file")
            if st.st_size == 0:
                # The umask may have narrowed the mode; attack data must not widen it.
                os.fchmod(fd, FILE_MODE)
                write_all(fd, HEADER)
                os.fdatasync(fd)
            else:
                self._check_header()
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _check_header(self) -> None:
        with open(self.path, "rb") as fh:
            first = fh.readline(4096)
        if first != HEADER:
            raise StateError(
                f"{self.path}: this CSV does not start with mlsd's header "
                f"({first[:80]!r}); move it aside (a MailLogSentinel CSV cannot be "
                "appended to: its column set differs) and start again"
            )

    def append(self, data: bytes) -> None:
        """Append already-encoded rows."""
        if data:
            write_all(self._fd, data)

    def sync(self) -> None:
        """Make the appended rows durable (fdatasync). A failure here is fatal upstream."""
        os.fdatasync(self._fd)

    def size(self) -> int:
        """The file's current length in bytes."""
        return os.fstat(self._fd).st_size

    def stat(self) -> os.stat_result:
        """fstat of the open CSV: its identity (st_dev, st_ino) and length for the checkpoint."""
        return os.fstat(self._fd)

    def truncate(self, length: int) -> None:
        """Cut the file back to `length` bytes (rows of an uncommitted batch) and sync.

        Only at start-up, before any append: O_APPEND writes then continue at the new end.
        """
        if length < len(HEADER):
            raise StateError(f"{self.path}: refusing to cut the CSV into its header")
        os.ftruncate(self._fd, length)
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the descriptor (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
