"""journalctl's JSON lines → events, through the file source's grammar (one grammar, two
sources): the entry's program, host and exact time beside its MESSAGE.

Only the lines that can hold an event are decoded, found as in a file with the needles'
block search; a MESSAGE that is not UTF-8 (an array of byte values) or too long for
journalctl to show (null) has no needle in sight, so such lines are decoded too.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Final

from mlsd.ingest.entry import parse_login_message, parse_message
from mlsd.ingest.grammar import Skip
from mlsd.ingest.logins import Parsed, SubmitJoin, collect, in_order
from mlsd.ingest.prefilter import FAILURES, SUCCESSES, candidate_lines, candidate_spans
from mlsd.ingest.sources.journal import entry_of, entry_time, field_bytes
from mlsd.journalmatch import Matcher
from mlsd.logins import Login
from mlsd.rows import AuthFailure

_OPAQUE: Final = (b'"MESSAGE":[', b'"MESSAGE":null')


def events_of(
    block: bytes,
    start: int,
    matcher: Matcher,
    skipped: Counter[Skip],
    rejected: list[tuple[Skip, bytes]] | None = None,
) -> list[AuthFailure]:
    """The events among the entries of `block` (complete lines of journalctl's JSON) from
    `start`: only the lines that can hold one are decoded. Skips are counted into
    `skipped`, and with `rejected` each skipped message is kept with its reason."""
    if any(m in block for m in _OPAQUE):
        lines = [
            line
            for line in block[start:].splitlines()
            if any(m in line for m in _OPAQUE) or candidate_lines(line + b"\n")
        ]
    else:
        lines = candidate_lines(block, FAILURES, start)
    now = datetime.now(UTC)
    events: list[AuthFailure] = []
    for line in lines:
        entry = entry_of(line)
        if entry is None:
            skipped[Skip.UNKNOWN_FORMAT] += 1
            continue
        if not matcher(entry):
            continue
        message = field_bytes(entry.get("MESSAGE"))
        if message is None:
            if "MESSAGE" in entry:  # null: longer than journalctl shows
                skipped[Skip.TOO_LONG] += 1
            continue
        result = parse_message(
            field_bytes(entry.get("SYSLOG_IDENTIFIER")) or b"",
            field_bytes(entry.get("_HOSTNAME")) or b"",
            message,
            entry_time(entry),
            now,
        )
        if isinstance(result, AuthFailure):
            events.append(result)
        elif result is not None:
            skipped[result] += 1
            if rejected is not None:
                rejected.append((result, message))
    return events


def logins_of(block: bytes, start: int, matcher: Matcher, join: SubmitJoin) -> list[Login]:
    """The logins and submissions among the entries of `block` from `start`, in journal
    order (`join`: as for a file, mlsd.ingest.logins). Only the lines whose MESSAGE shows
    a needle are decoded: a login in a message journalctl cannot show as text is not
    read (the failures' search decodes those; a login is not worth a decode per entry)."""
    lines = in_order(block, candidate_spans(block, SUCCESSES, start), join, start)
    now = datetime.now(UTC)
    return collect(lines, join, now, lambda line: _login(line, matcher, now))


def _login(line: bytes, matcher: Matcher, now: datetime) -> Parsed:
    entry = entry_of(line)
    if entry is None or not matcher(entry):
        return None
    message = field_bytes(entry.get("MESSAGE"))
    if message is None:
        return None
    return parse_login_message(
        field_bytes(entry.get("SYSLOG_IDENTIFIER")) or b"",
        field_bytes(entry.get("_HOSTNAME")) or b"",
        message,
        entry_time(entry),
        now,
    )
