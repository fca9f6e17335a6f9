"""`mlsd status` with a journal source: the time of the last entry read, and how far behind
the journal's last entry that is (asked of journalctl, as the user running `status`)."""

from __future__ import annotations

from dataclasses import dataclass

from mlsd.config import Config
from mlsd.ingest.sources.journal import cursor_time, entry_of, entry_time, last_entry, same_entry
from mlsd.journalmatch import Matcher


@dataclass(frozen=True, slots=True)
class Position:
    """Where reading stands in the journal."""

    read_until: float | None
    """The realtime of the last entry read (from the checkpointed cursor), epoch seconds."""
    behind_seconds: float | None
    """How much later the journal's last entry is (0: it was read); None: not known."""
    problem: str | None = None
    """Why journalctl could not say (this user may not read the journal)."""


def position(cfg: Config, cursor: str | None) -> Position:
    """Compare the checkpointed cursor with the journal's last entry."""
    at = cursor_time(cursor) if cursor is not None else None
    read_until = None if at is None else at.timestamp()
    out, problem = last_entry(Matcher(cfg.source.journal_match), cfg.source.journal_directory)
    if problem is not None:
        return Position(read_until, None, problem)
    lines = out.splitlines()
    last = entry_of(lines[-1]) if lines else None
    if last is None:
        return Position(read_until, 0.0)  # an empty journal: nothing to read
    if cursor is not None and same_entry(last["__CURSOR"], cursor):
        return Position(read_until, 0.0)
    end = entry_time(last)
    if at is None or end is None:
        return Position(read_until, None)
    return Position(read_until, max(0.0, (end - at).total_seconds()))
