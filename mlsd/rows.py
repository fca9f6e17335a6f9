"""The row contract: what one CSV row holds, in which order, and how rows become bytes.

The only module that knows the column order. The ingest side (parse → enrich → append)
and the report side (window, history, compose) meet here and nowhere else: a new column is
added here, and every reader finds it by name. The first nine columns are MailLogSentinel's,
in its order, so its users' scripts keep working.

Both directions live here: `encode_rows` writes rows, `decode_row` reads one back (the
report's readers inline its plain-line case where they run once per row, and say so).
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final, NamedTuple


class Column(enum.IntEnum):
    """A column's position in a row; `Column.IP` rather than `f[2]`."""

    # MailLogSentinel's columns, in its order:
    SERVER = 0
    DATE = 1
    IP = 2
    USER = 3
    HOSTNAME = 4
    REVERSE_DNS_STATUS = 5
    COUNTRY_CODE = 6
    ASN = 7
    ASO = 8
    # mlsd's additions:
    SERVICE = 9
    MECHANISM = 10
    ATTEMPTS = 11


COLUMNS: Final = tuple(c.name.lower() for c in Column)
"""The header's names, in order: server;date;ip;user;hostname;reverse_dns_status;…"""
DELIMITER: Final = ";"
HEADER: Final = (DELIMITER.join(COLUMNS) + "\n").encode()
QUOTE: Final = '"'
"""Only a line holding it has a quoted cell (see `decode_row`)."""
SKELETON: Final = (DELIMITER * (len(COLUMNS) - 1)).encode()
"""What is left of a plain row (no quoted cell) once every byte but the delimiters is
dropped: a byte-level check that a line has exactly the columns, and none quoted."""
NOT_AVAILABLE: Final = "N/A"


class ReverseStatus(enum.StrEnum):
    """The `reverse_dns_status` column: every value mlsd writes there (one definition)."""

    OK = "OK"
    """A name: Postfix logged one, or the lookup found one that resolves back."""
    NONE = "NONE"
    """No name: Postfix logged `unknown`, or the lookup found none."""
    NOT_AVAILABLE = NOT_AVAILABLE
    """The line carries no hostname (Dovecot's login lines) and no lookup was made."""
    OFF = "OFF"
    """`[dns] reverse = off`."""
    TIMEOUT = "TIMEOUT"
    """The lookup got no answer in time."""
    ERROR = "ERROR"
    """The lookup failed (SERVFAIL, refused, …)."""


class AuthFailure(NamedTuple):
    """A failed authentication: one client, one attempt (or N, when Dovecot folds them).

    A NamedTuple, not a frozen dataclass: just as immutable, and built in a third of the
    time, which matters at one per attack line (see the parse benchmarks).
    """

    time: datetime
    """When it was logged, timezone-aware."""
    server: str
    """The syslog host field; empty when the log has none (Dovecot's own log file)."""
    service: str
    """smtp, submission, smtps, submissions, imap, pop3, managesieve, …"""
    mechanism: str
    """SASL mechanism in upper case (PLAIN, LOGIN, CRAM-MD5…); empty when not logged."""
    hostname: str
    """Client hostname as the server logged it (`unknown` included); empty when not logged."""
    ip: str
    """Client IP, validated and in canonical form (IPv6 compressed)."""
    user: str | None
    """The username the client tried; None when the line does not say."""
    reason: str
    """The server's reason text, as logged."""
    attempts: int = 1
    """Failed attempts this line stands for (Dovecot logs `auth failed, 3 attempts` once)."""


class Enrichment(NamedTuple):
    """What mlsd adds to an event: reverse DNS, country and network owner.

    A NamedTuple like AuthFailure, for the same reason: one is built per row.
    """

    hostname: str
    reverse_dns_status: str
    country_code: str = NOT_AVAILABLE
    asn: str = NOT_AVAILABLE
    aso: str = NOT_AVAILABLE


def encode_rows(rows: Iterable[Sequence[str]]) -> bytes:
    """Rows as RFC 4180 `;`-separated text (LF line ends), ready for one append."""
    out = []
    for row in rows:
        line = DELIMITER.join(row)
        # Most rows need no quoting at all: only a delimiter, a quote or a line break in
        # a cell (or a lone empty cell) does, and then the csv module writes that row.
        if (
            line.count(DELIMITER) != len(row) - 1
            or '"' in line
            or "\n" in line
            or "\r" in line
            or not line
        ):
            line = _quoted(row)
        out.append(line)
    if not out:
        return b""
    out.append("")
    return "\n".join(out).encode("utf-8")


def _quoted(row: Sequence[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=DELIMITER, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerow(
        row
    )
    return buf.getvalue()[:-1]


def split_cells(line: str) -> list[str]:
    """A line's cells as the csv module reads them (quotes undone, a line end dropped; no
    cell for an empty line)."""
    try:
        return next(csv.reader([line], delimiter=DELIMITER), [])
    except csv.Error:
        # A carriage return inside an unquoted cell: csvlog never writes one, but a
        # hand-edited file can hold it, and no line may stop a report. Split on the
        # delimiter: the cells are cleaned wherever they are shown.
        return line.rstrip("\r\n").split(DELIMITER)


def decode_row(line: str, width: int = len(COLUMNS)) -> list[str] | None:
    """A line's cells in COLUMNS order (more are tolerated: the first ones are the row's),
    or None when it is not a row: fewer cells than columns (`width`: another CSV's, the
    logins CSV's).

    Only a line holding a quote needs the csv module; any other is split on the delimiter,
    which is what csvlog wrote between its cells.
    """
    cells = split_cells(line) if QUOTE in line else line.split(DELIMITER)
    return cells if len(cells) >= width else None


ATTEMPTS_MAX: Final = 2**31 - 1
"""The most attempts a row may stand for (and a logins row's recipients): what the stores'
integer columns hold (the fleet's is PostgreSQL's `integer`). mlsd writes small numbers; a
larger one is an edited row."""


def attempts_of(cell: str) -> int:
    """The `attempts` cell as a number: 1 when it is not one, or not one a store can hold
    (a damaged or edited row: it must not stop the store, which would refuse it forever)."""
    if cell == "1":
        return 1
    try:
        n = int(cell)
    except ValueError:
        return 1
    return n if -ATTEMPTS_MAX - 1 <= n <= ATTEMPTS_MAX else 1
