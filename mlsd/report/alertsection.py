"""The daily report's first section, "Possible compromises": the alerts the sentinel raised
in the report's window, read from the alerts journal (`state_dir/alerts.jsonl`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Final

from mlsd import alertlog
from mlsd.alerts import Alert
from mlsd.config import Config
from mlsd.report.display import mask, plain, shown
from mlsd.report.document import Col, Section, Table, plural

TITLE: Final = "Possible compromises"


def possible_compromises(cfg: Config, start: datetime, end: datetime, tz: tzinfo) -> Section:
    """The section for `[start, end)`: a table of alerts, or a note saying "none" (or why
    it is not known)."""
    path = alertlog.journal_path(cfg.paths.state_dir)
    try:
        found, damaged = alertlog.scan(path, start, end)
    except OSError as exc:
        why = exc.strerror or "unreadable"
        return Section(TITLE, [f"Not known: cannot read {plain(str(path))}: {why}."])
    return section(found, tz, cfg.report.top, masked=cfg.report.mask_usernames, damaged=damaged)


def section(
    found: Sequence[Alert], tz: tzinfo, top: int, *, masked: bool = False, damaged: int = 0
) -> Section:
    """The section of the alerts `found` (in journal order)."""
    notes = []
    if damaged:
        notes.append(f"{plural(damaged, 'unreadable line')} of the alerts journal skipped.")
    if not found:
        return Section(TITLE, ["none", *notes])
    notes.insert(
        0,
        f"{plural(len(found), 'alert')}: each was mailed with its evidence when it was "
        'raised; `mlsd alerts --since` lists them. README, "Sentinel", says how to dismiss '
        "or act on one.",
    )
    ordered = sorted(found, key=lambda a: a.time)
    rows = [
        (
            f"{a.time.astimezone(tz):%H:%M}",
            shown(mask(a.user) if masked else a.user) if a.user else "?",
            shown(a.ip),
            shown(a.country),
            shown(a.headline),
        )
        for a in ordered[:top]
    ]
    more = f"… and {len(ordered) - top} more" if len(ordered) > top else ""
    # The rule is in the headline's words and in the mail; the text part is 78 columns.
    cols = (
        Col("time"),
        Col("user", "untrusted"),
        Col("ip", "ip"),
        Col("cc", "untrusted", drop=1),
        Col("what", "untrusted"),
    )
    return Section(TITLE, notes, Table(cols, rows, more))
