"""A built report or alert as the mail that carries it: the RFC 5322 message, its envelope
sender and its recipients. One header builder for both (From, To, Date, Message-ID,
Auto-Submitted)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from mlsd.config import Config
from mlsd.report.compose import Report
from mlsd.report.mailname import mail_hostname
from mlsd.untrusted import terminal

_WIRE = SMTP.clone(max_line_length=998)
# Headers are written unfolded up to RFC 5322's hard limit: Python's folder would move a
# subject that is a little over 78 characters whole onto a continuation line, which reads
# back with a leading space. Bodies are encoded to 76-column lines by set_content.


def headed(
    subject: str,
    cfg: Config,
    recipients: Sequence[str],
    *,
    now: datetime,
    mail_host: str,
    kind: str = "report",
) -> tuple[EmailMessage, str]:
    """A message with mlsd's headers and no body yet, and its envelope sender. `subject`
    is made one printable line (mlsd.untrusted), non-ASCII is written as encoded words by
    the SMTP policy, and a literal encoded word in it is defused (`safe_subject`)."""
    sender = cfg.report.sender or f"mlsd@{mail_host}"
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = safe_subject(subject)
    msg["From"] = sender
    if recipients:
        msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC))
    msg["Message-ID"] = make_msgid(f"mlsd-{kind}", domain=mail_host)
    # RFC 3834: an automatic message; vacation responders must not answer it.
    msg["Auto-Submitted"] = "auto-generated"
    return msg, sender


def safe_subject(subject: str) -> str:
    """`subject` as a header value that cannot become more than one header.

    Python's email package (3.11, before its fix for CVE-2024-6923) decodes an RFC 2047
    encoded word in a value it is given and writes the decoded text out raw: a username
    `=?utf-8?q?=0D=0ABcc:_x@example.com?=` became a Bcc header. So `=?` is written
    `=\\x3f` (mlsd.untrusted's visible form), after the class's characters are.
    """
    return terminal(subject).replace("=?", "=\\x3f")


def wire(msg: EmailMessage) -> bytes:
    """The message's bytes as sent."""
    return msg.as_bytes(policy=_WIRE)


def to_message(
    report: Report, cfg: Config, *, now: datetime, hostname: str
) -> tuple[bytes, str, list[str]]:
    """The RFC 5322 message (multipart/mixed > multipart/alternative + attachment), the
    envelope sender and the recipients."""
    # The short name makes an address no remote MTA accepts: Postfix's myhostname or the
    # FQDN (mlsd.mailname), the short name only when there is nothing better.
    recipients = list(cfg.report.to)
    msg, sender = headed(
        report.subject, cfg, recipients, now=now, mail_host=mail_hostname(hostname)
    )
    msg.set_content(report.text, subtype="plain", charset="utf-8")
    msg.add_alternative(report.html, subtype="html", charset="utf-8")
    # Always mixed, even without an attachment, so that readers see one stable structure.
    msg.make_mixed()
    if report.attachment is not None:
        name, data, mime = report.attachment
        maintype, subtype = mime.split("/", 1)
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return wire(msg), sender, recipients
