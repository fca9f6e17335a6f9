"""`mlsd status`'s alerts line: how many alerts today, and the newest (issue 20).

Read from the alerts journal, as `mlsd alerts` does; the user and the headline came from
log lines: the status renderer escapes the whole line (mlsd.untrusted)."""

from __future__ import annotations

from datetime import datetime, time

from mlsd.alertlog import journal_path, scan
from mlsd.config import Config


def summary(cfg: Config, now: datetime) -> str:
    """`2 today (newest 10:31 new_country alice@example.org: new country SE)`, `none today`,
    or "" with `[sentinel] alerts = no`."""
    if not cfg.sentinel.alerts:
        return ""
    tz = cfg.report_tz()
    start = datetime.combine(now.astimezone(tz).date(), time(0), tz)
    try:
        alerts, damaged = scan(journal_path(cfg.paths.state_dir), start)
    except OSError as exc:
        return f"not known (cannot read the alerts journal: {exc.strerror or exc})"
    text = f"{len(alerts)} today" if alerts else "none today"
    if alerts:
        last = max(alerts, key=lambda a: a.time)
        text += (
            f" (newest {last.time.astimezone(tz):%H:%M} {last.rule.value} {last.user}: "
            f"{last.headline})"
        )
    if damaged:
        text += f"; {damaged} damaged journal lines skipped"
    return text + "; `mlsd alerts` lists them" if alerts else text
