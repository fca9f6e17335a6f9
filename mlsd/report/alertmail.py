"""An alert as the mail that tells the admin: a subject to filter on, a plain-text body
with the trigger, the evidence, the thresholds, and how to dismiss it or act.

Most of an alert is attacker-chosen (the user, the server field, the organisation, the
evidence's values): every such field goes through mlsd.untrusted's terminal form and is
capped (`report.display.shown`), so the subject is one printable line (non-ASCII becomes
an RFC 2047 encoded word, by the SMTP policy) and the body holds no control, escape or
invisible character. The headers are the report's (`report.message.headed`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Final

from mlsd.alerts import Alert, Rule
from mlsd.config import Config
from mlsd.report.display import SHOWN_CAP, cut, plain, shown
from mlsd.report.message import headed, wire
from mlsd.rows import NOT_AVAILABLE

WIDTH: Final = 78
VALUE_CAP: Final = 8 * SHOWN_CAP
"""Longest evidence value shown (a list of IPs is long; a 10 kB username is cut)."""

RULE_TEXT: Final[dict[Rule, str]] = {
    Rule.SUCCESS_AFTER_FAILURES: "a successful login after many failed ones, for this user "
    "(from any IPs) or from this IP (for any users)",
    Rule.NEW_COUNTRY: "a login from a country not seen in the user's own logins of the "
    "last [sentinel] history_days days",
    Rule.NEW_NETWORK: "a login from a network (ASN) not seen in the user's own logins of "
    "the last [sentinel] history_days days",
    Rule.MANY_SOURCES: "logins from many distinct IPs, or countries, within a day",
    Rule.SEND_BURST: "more recipients submitted in an hour than both a floor and a "
    "multiple of the user's own highest hour",
}

DISMISS: Final = (
    "Expected (a VPN, a new phone, travel, a service account)? Add the network to "
    "[sentinel] ignore_networks, or the user to [sentinel] ignore_users, then "
    "`systemctl reload mlsd`."
)
ACT: Final = (
    "Not expected? Change the password, and until then refuse the account: in Postfix, "
    "`check_sasl_access` (the user -> REJECT) in smtpd_recipient_restrictions, or "
    "smtpd_sender_login_maps; in Dovecot, a passdb with `deny = yes` listing the user. "
    'mlsd never locks an account itself: README, section "Sentinel".'
)


@dataclass(frozen=True, slots=True)
class AlertText:
    """An alert, written for the admin."""

    subject: str
    text: str


def subject(alert: Alert, prefix: str, node: str = "?") -> str:
    """`[mlsd] ALERT mx1: possible compromise of alice@example.org (new country SE)`.
    `node` names the server when the line did not (Dovecot's own log file has no host)."""
    return (
        f"{prefix} ALERT {shown(alert.server or node)}: possible compromise of "
        f"{shown(alert.user or '?')} ({shown(alert.headline)})"
    ).strip()


def origin(alert: Alert) -> str:
    """`198.51.100.7, SE, AS64500 Example Net`: the IP and what is known of it, cleaned."""
    parts = [shown(alert.ip)]
    parts += [shown(v) for v in (alert.country,) if v and v != NOT_AVAILABLE]
    net = " ".join(shown(v) for v in (alert.asn, alert.aso) if v and v != NOT_AVAILABLE)
    return ", ".join(parts + ([net] if net else []))


def when(alert: Alert, tz: tzinfo) -> str:
    """The trigger's log time in the report's zone."""
    return f"{alert.time.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}"


def _pairs(pairs: Sequence[tuple[str, str]]) -> list[str]:
    labels = [shown(k) for k, _ in pairs]
    width = min(max((len(k) for k in labels), default=0), 28) + 2
    lines = []
    for label, (_, value) in zip(labels, pairs, strict=True):
        chunks = textwrap.wrap(
            cut(plain(value), VALUE_CAP),
            WIDTH - 2 - width,
            break_on_hyphens=False,
        ) or [""]
        if len(label) < width:
            lines.append(("  " + label.ljust(width) + chunks[0]).rstrip())
            chunks = chunks[1:]
        else:
            # A long label (it may quote a username) on its own lines: never run into
            # its value (`… in 60 min13`).
            lines += ["  " + part for part in textwrap.wrap(label, WIDTH - 2) or [""]]
        lines += ["  " + " " * width + c for c in chunks]
    return lines


def _para(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, break_on_hyphens=False)


def render(alert: Alert, cfg: Config) -> AlertText:
    """The subject and the plain-text body of `alert`."""
    tz = cfg.report_tz()
    user = shown(alert.user or "?")
    head = [
        ("Rule", f"{alert.rule.value}: {RULE_TEXT[alert.rule]}"),
        ("When", f"{when(alert, tz)} (log time)"),
        ("User", user),
        ("From", origin(alert)),
        ("Server", shown(alert.server or "?")),
        ("Alert id", alert.id),
    ]
    title = _para(f"Possible compromise of {user} on {shown(alert.server or '?')}")
    lines = [*title, "=" * max(len(t) for t in title), "", *_head(head), ""]
    lines += ["Evidence", "--------"]
    lines += _pairs(alert.evidence) if alert.evidence else ["  (none given)"]
    lines += ["", "Thresholds ([sentinel])", "-----------------------"]
    lines += _pairs(alert.thresholds) if alert.thresholds else ["  (none given)"]
    lines += ["", *_para(DISMISS), "", *_para(ACT), ""]
    lines += _para(f"`mlsd alerts --since 1d` lists the last day's alerts; this one is {alert.id}.")
    node = cfg.fleet.node_name()
    return AlertText(subject(alert, cfg.report.subject_prefix, node), "\n".join(lines) + "\n")


def _head(pairs: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in pairs) + 2
    out = []
    for key, value in pairs:
        chunks = textwrap.wrap(value, WIDTH - width, break_on_hyphens=False) or [""]
        out.append(key.ljust(width) + chunks[0])
        out += [" " * width + c for c in chunks[1:]]
    return out


def recipients(cfg: Config) -> tuple[str, ...]:
    """Who gets alert mail: `[sentinel] to`, else `[report] to` (empty: nobody)."""
    return cfg.sentinel.to or cfg.report.to


def to_message(
    alert: Alert, cfg: Config, *, now: datetime, mail_host: str
) -> tuple[bytes, str, list[str]]:
    """The alert's RFC 5322 message (text/plain), envelope sender and recipients."""
    rendered = render(alert, cfg)
    to = list(recipients(cfg))
    msg, sender = headed(rendered.subject, cfg, to, now=now, mail_host=mail_host, kind="alert")
    # Non-ASCII as quoted-printable: ASCII on the wire (a relay without 8BITMIME).
    cte = None if rendered.text.isascii() else "quoted-printable"
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte=cte)
    return wire(msg), sender, to
