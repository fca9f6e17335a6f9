"""`report.json` (the last day queued, the last delivery) and the outbox's tags: what a
restart, `mlsd status` and the archive read of the daily report's state."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Final

from mlsd.report.smtp import Entry
from mlsd.safefs import read_file

STATE_NAME: Final = "report.json"
TAG_PREFIX: Final = "report:"
"""The node's daily report's outbox tag: `report:YYYY-MM-DD`."""
ALERT_TAG: Final = "alert:"
"""An alert mail's outbox tag starts so (mlsd.report.alertsend)."""


def read_last_queued(path: Path) -> date | None:
    """The day `report.json` says was queued last; None when there is no such file.
    Raises OSError, or ValueError when it is not what mlsd writes (a message that quotes
    none of it: the file may not be ours)."""
    try:
        return date.fromisoformat(json.loads(read_file(path))["last_queued"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        raise ValueError("not mlsd's report state") from None


def read_last_delivered(path: Path) -> float | None:
    """When `report.json` says a report was last delivered (epoch seconds); None when it
    does not say, or cannot be read (the day it was queued is what matters; this is a gauge)."""
    try:
        value = json.loads(read_file(path)).get("last_delivered")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and value > 0 else None


def tagged_day(entry: Entry) -> date | None:
    """The report day an outbox entry carries (`report:YYYY-MM-DD`), or None."""
    if not entry.tag.startswith(TAG_PREFIX):
        return None
    try:
        return date.fromisoformat(entry.tag.removeprefix(TAG_PREFIX))
    except ValueError:
        return None
