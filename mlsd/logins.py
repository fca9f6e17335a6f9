"""The logins contract: a successful login or a message submission, and the logins CSV's columns.

Ingest parses them (Dovecot `Login:`, Postfix `sasl_username=`, qmgr `nrcpt=`) and writes
them to the logins CSV beside the failures CSV, in the same checkpoint; the sentinel, the
store and the reports read them. Every text field came from a log line: attacker-chosen,
kept raw here, cleaned by each surface (mlsd.untrusted).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Final, NamedTuple

from mlsd.rows import DELIMITER


class Kind(enum.StrEnum):
    """What a line said about an account."""

    FAILURE = "failure"
    """A failed authentication (a row of the failures CSV)."""
    LOGIN = "login"
    """A successful login: Dovecot `Login: user=<U>` (IMAP, POP3, submission, ManageSieve),
    Postfix smtpd `client=…, sasl_username=U` (logged once per message submitted)."""
    SUBMIT = "submit"
    """A message submitted by a SASL user: qmgr's `nrcpt=N` joined by queue id to smtpd's
    `sasl_username=U` line. `recipients` holds N."""


class Login(NamedTuple):
    """A successful login or a submission, as parsed (before enrichment)."""

    time: datetime
    """When it was logged, timezone-aware."""
    server: str
    service: str
    """imap, pop3, submission, managesieve, smtp, …"""
    user: str
    ip: str
    """Validated, canonical form; empty when the line has none (a local login)."""
    mechanism: str
    hostname: str = ""
    kind: Kind = Kind.LOGIN
    recipients: int = 0
    """Kind.SUBMIT: recipients of the message (qmgr's nrcpt)."""


LOGIN_COLUMNS: Final = (
    "server",
    "date",
    "ip",
    "user",
    "hostname",
    "country_code",
    "asn",
    "aso",
    "service",
    "mechanism",
    "event",
    "recipients",
)
"""The logins CSV's header names, in order (`;`-separated like the failures CSV)."""
LOGIN_HEADER: Final = (DELIMITER.join(LOGIN_COLUMNS) + "\n").encode()
"""The logins CSV's first line (the one definition: ingest writes it, the store reads past it)."""
