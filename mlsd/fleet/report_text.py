"""The fleet report as plain text (`mlsd report --fleet --text`).

Here, not under mlsd/report: the report role may not import the fleet (the import rule of
tests/test_architecture.py), and this renders the fleet's `FleetReport`.

Every value that came from the database is attacker-chosen (IPs, usernames, countries,
node names: a node's role may insert any text) and goes through `untrusted.terminal`, then
is cut to its column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import Final

from mlsd import untrusted
from mlsd.fleet.report import Cross, FleetReport, NodeLine, Top

VALUE_WIDTH: Final = 40
"""Widest attacker-chosen cell, in characters (longer ones end with `…`)."""


def safe(value: str, cap: int = VALUE_WIDTH) -> str:
    """An attacker-chosen value for the terminal: escaped, then cut to `cap`."""
    text = untrusted.terminal(value)
    return text if len(text) <= cap else text[: cap - 1] + "…"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[bool]) -> list[str]:
    body = [list(head), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in body) for i in range(len(head))]
    out = []
    for r in body:
        cells = [
            c.rjust(w) if right[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append(("  " + "  ".join(cells)).rstrip())
    return out


def _when(at: datetime | None, tz: tzinfo, day_of: datetime) -> str:
    if at is None:
        return "never"
    local = at.astimezone(tz)
    if local.date() == day_of.astimezone(tz).date():
        return f"{local:%H:%M}"
    return f"{local:%Y-%m-%d %H:%M}"


def _cross(title: str, found: tuple[Cross, ...], total: int, what: str) -> list[str]:
    lines = [f"{title}: {total}"]
    if not found:
        return [*lines, f"  (no {what} seen by two or more servers)"]
    rows = []
    for c in found:
        names = ", ".join(safe(n, 20) for n in c.some_nodes)
        more = ", …" if c.nodes > len(c.some_nodes) else ""
        rows.append([str(c.nodes), str(c.attempts), safe(c.value), names + more])
    return lines + _table(["servers", "attempts", what, "on"], rows, [True, True, False, False])


def _top(title: str, found: tuple[Top, ...], what: str) -> list[str]:
    if not found:
        return [f"{title}: none"]
    rows = [[str(t.attempts), str(t.nodes), safe(t.value)] for t in found]
    return [title + ":", *_table(["attempts", "servers", what], rows, [True, True, False])]


def _coverage(r: FleetReport, tz: tzinfo) -> list[str]:
    def line(n: NodeLine) -> list[str]:
        state = "complete" if n.complete else "BEHIND?"
        return [safe(n.node, 30), _when(n.newest, tz, r.start), _when(n.shipped_at, tz, r.start),
                state]  # fmt: skip

    lines = ["Coverage (each server's newest row in the day, its last shipping):"]
    lines += _table(["server", "rows up to", "shipped at", ""], map(line, r.per_node),
                    [False, False, False, False])  # fmt: skip
    for n in r.behind():
        up_to = _when(n.newest, tz, r.start)
        lines.append(
            f"  {safe(n.node, 30)}: rows up to {up_to} only (last shipped "
            f"{_when(n.shipped_at, tz, r.start)}): its figures may be short"
        )
    return lines


def _compromises(r: FleetReport, tz: tzinfo) -> list[str]:
    title = "Possible compromises across servers (a login after failures for the user)"
    if not r.compromises:
        return [f"{title}: none"]
    rows = [
        [
            f"{c.time.astimezone(tz):%H:%M:%S}",
            safe(c.node, 20),
            safe(c.user),
            safe(c.ip),
            safe(c.country, 3),
            str(c.failures),
            ", ".join(safe(n, 20) for n in c.failed_on),
        ]
        for c in r.compromises
    ]
    more = r.compromises_total - len(r.compromises)
    head = ["time", "on", "user", "IP", "cc", "failures", "failed on"]
    right = [False, False, False, False, False, True, False]
    lines = [f"{title}: {r.compromises_total}", *_table(head, rows, right)]
    return lines + ([f"  … and {more} more"] if more > 0 else [])


def render(r: FleetReport, tz: tzinfo) -> str:
    """The whole report, lines of plain text (no attacker-chosen character unescaped)."""
    span = "so far" if r.partial else "whole day"
    lines = [
        f"mlsd fleet report for {r.day} ({tz}, {span})",
        "",
        f"Failed logins: {r.attempts} attempts in {r.rows} rows, {r.ips} IPs, "
        f"{r.users} usernames, on {r.nodes_seen} servers",
    ]
    if r.behind():
        names = ", ".join(safe(n.node, 30) for n in r.behind())
        lines.append(f"Incomplete: {names} may not have shipped all of the day (see Coverage)")
    lines.append("")
    lines += _compromises(r, tz)
    lines.append("")
    rows = [[safe(n.node, 30), str(n.attempts), str(n.rows), str(n.ips), str(n.users)]
            for n in r.per_node]  # fmt: skip
    lines += ["Per server:"]
    lines += _table(["server", "attempts", "rows", "IPs", "users"], rows,
                    [False, True, True, True, True])  # fmt: skip
    lines.append("")
    lines += _cross("Attackers seen by two or more servers", r.cross_ips, r.cross_ips_total, "IP")
    lines.append("")
    lines += _cross("Usernames tried on two or more servers", r.cross_users, r.cross_users_total,
                    "user")  # fmt: skip
    lines.append("")
    lines += _top("Top IPs", r.top_ips, "IP")
    lines.append("")
    lines += _top("Top usernames", r.top_users, "user")
    lines.append("")
    lines += _top("Top countries", r.top_countries, "country")
    lines.append("")
    lines += _coverage(r, tz)
    return "\n".join(lines) + "\n"


def html_page(text: str, title: str) -> str:
    """The rendered text as a minimal HTML page: the text in a <pre>, HTML-escaped (it is
    already in the terminal form, so this is `untrusted.html` of every value)."""
    body = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    body = body.replace('"', "&quot;").replace("'", "&#x27;")
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body><pre>{body}</pre></body></html>\n"
    )
