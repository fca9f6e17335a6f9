"""How the report shows attacker-chosen text: printable, capped, masked, and measured in
terminal columns.

Everything that came from a log line (usernames, hostnames, server, organisation, country,
even the IP column: the CSV is a file anyone with access could edit) is attacker-controlled.
It is shown with control characters and other non-printable characters (ANSI/terminal
escapes, bidi overrides) turned into visible `\\xNN` text, capped in length, and optionally
masked (`[report] mask_usernames`); the HTML part escapes it as well (`report.html`).
"""

from __future__ import annotations

import unicodedata
from typing import Final

from mlsd.untrusted import terminal

SHOWN_CAP: Final = 64
"""Longest attacker-chosen value shown (characters); text columns may cut it further."""


def plain(value: str) -> str:
    """`value` with every character of mlsd.untrusted's class (controls, ESC, bidi
    overrides, line separators, zero-width characters) turned into visible
    `\\xNN`/`\\uNNNN` text."""
    return terminal(value)


def width(value: str) -> int:
    """Terminal columns `value` takes: East Asian wide characters count 2, combining 0."""
    if value.isascii():
        return len(value)
    return sum(_char_width(ch) for ch in value)


def _char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1


def cut(value: str, cols: int) -> str:
    """`value` cut to at most `cols` columns, ending with `…` when cut."""
    if width(value) <= cols:
        return value
    out, used = [], 0
    for ch in value:
        w = _char_width(ch)
        if used + w > cols - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + "…"


def shown(value: str) -> str:
    """An attacker-chosen value as the report shows it: printable and capped."""
    return cut(plain(value), SHOWN_CAP)


def mask(user: str) -> str:
    """`alice@example.org` → `a***@example.org`: enough to tell accounts apart, not to read."""
    local, at, domain = user.partition("@")
    return (local[:1] + "***" if local else "") + at + domain
