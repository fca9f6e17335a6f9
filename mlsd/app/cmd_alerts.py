"""`mlsd alerts`: the alerts journal as a table on a terminal, or JSON lines for a script.

Reads `state_dir/alerts.jsonl` only (no lock: it works while the daemon runs and writes
it). Every attacker-chosen field is shown in mlsd.untrusted's terminal form, capped; the
JSON is ASCII with every control and non-ASCII character escaped.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Final

from mlsd.app.cmd_common import EXIT_OK, load_config
from mlsd.untrusted import terminal

if TYPE_CHECKING:
    from mlsd.alerts import Alert

# json and the alerts' modules are imported where used: the parser imports this module,
# and `mlsd parse` and `--version` should not pay for them (mlsd.app.cli).

_DURATION: Final = re.compile(r"(\d{1,6})([mhdw])")
_UNIT: Final = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
CAP: Final = 40
"""Longest attacker-chosen cell in the table, in characters."""


def since_arg(raw: str) -> date | datetime | timedelta:
    """`--since`: a day (YYYY-MM-DD, from its start in [report] timezone), an instant
    (ISO 8601, with or without an offset) or a duration back from now (30m, 12h, 7d, 2w)."""
    word = raw.strip().lower()
    m = _DURATION.fullmatch(word)
    if m:
        return timedelta(seconds=int(m[1]) * _UNIT[m[2]])
    try:
        return date.fromisoformat(word)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{raw!r} is not a day (YYYY-MM-DD), a time (ISO 8601) or a duration (30m, 12h, 7d, 2w)"
        ) from None


def resolve_since(
    value: date | datetime | timedelta | None, now: datetime, tz: tzinfo
) -> datetime | None:
    """The instant `--since` names (None: from the beginning)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return now - value
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=tz)
    return datetime.combine(value, datetime.min.time(), tz)


def alerts(args: argparse.Namespace) -> int:
    """List the journal's alerts since `--since` (default: all), oldest first."""
    import json  # noqa: PLC0415 - see the note on imports at the top

    from mlsd import alertlog  # noqa: PLC0415

    cfg = load_config(args, required=True)
    tz = cfg.report_tz()
    since = resolve_since(args.since, datetime.now(UTC), tz)
    path = alertlog.journal_path(cfg.paths.state_dir)
    found, damaged = alertlog.scan(path, since)
    if damaged:
        sys.stderr.write(
            f"mlsd alerts: {damaged} unreadable line{'s' if damaged != 1 else ''} in "
            f"{terminal(str(path))} skipped (torn by a crash, or edited)\n"
        )
    if args.json:
        for a in found:
            sys.stdout.write(json.dumps(a.to_json(), ensure_ascii=True) + "\n")
        return EXIT_OK
    if not found:
        when = "" if since is None else f" since {since.astimezone(tz):%Y-%m-%d %H:%M %Z}"
        sys.stdout.write(f"No alerts{when}.\n")
        return EXIT_OK
    sys.stdout.write(table(found, tz))
    return EXIT_OK


def _cell(value: str) -> str:
    text = terminal(value)
    return text if len(text) <= CAP else text[: CAP - 1] + "…"


def table(found: list[Alert], tz: tzinfo) -> str:
    """The alerts as aligned columns, the headline last (not padded)."""
    head = ("time", "rule", "user", "ip", "cc", "server", "id", "headline")
    rows = [
        (
            f"{a.time.astimezone(tz):%Y-%m-%d %H:%M:%S}",
            a.rule.value,
            _cell(a.user),
            _cell(a.ip),
            _cell(a.country),
            _cell(a.server),
            a.id,
            _cell(a.headline),
        )
        for a in found
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    out = []
    for r in [head, *rows]:
        cells = [c.ljust(w) for c, w in zip(r, widths, strict=False)]
        out.append("  ".join([*cells, r[-1]]).rstrip())
    return "\n".join(out) + "\n"
