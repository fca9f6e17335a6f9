"""A message that comes with its program, host and exact time beside it (a journal
entry's fields), through the same grammar as the message part of a log line."""

from __future__ import annotations

from datetime import UTC, datetime

from mlsd.ingest.grammar import MAX_CANDIDATE_LINE, Result, Skip, _message
from mlsd.ingest.logins import Parsed, Queued, login_of_message
from mlsd.ingest.prefilter import RARE_NEEDLES
from mlsd.ingest.stamps import EARLIEST, LATEST, clock_for, plausible_until
from mlsd.rows import AuthFailure

# What the grammar resolves when a message comes with its own time: any valid stamp,
# replaced by that time in the result.
_GIVEN_TIME = (None, None, b"1970-01-01T00:00:00+00:00", None)


def parse_message(
    program: bytes, host: bytes, message: bytes, when: datetime | None, ref: datetime
) -> Result:
    """The same forms, the same skips as a log line's message. `when` is the exact time
    (None: not one a datetime can hold); `ref` the time it is read (a time more than a day
    after it is implausible). Never raises."""
    if b"authentication failed" in message:
        kind = 1
    elif b"auth failed" in message or any(n in message for n in RARE_NEEDLES):
        kind = 2
    else:
        return None
    if len(message) > MAX_CANDIDATE_LINE:
        return Skip.TOO_LONG
    try:
        stamp = (*_GIVEN_TIME, host or None, program)
        result = _message(stamp, message.rstrip(b"\r\n"), clock_for(ref, UTC), kind)
    except Exception:  # pragma: no cover - the contract is "never raises"
        return Skip.UNKNOWN_FORMAT
    if not isinstance(result, AuthFailure):
        return result
    if when is None or not EARLIEST <= when <= LATEST:
        return Skip.OUT_OF_RANGE
    if when > plausible_until(ref):
        return Skip.IMPLAUSIBLE_TIME
    return result._replace(time=when)


def parse_login_message(
    program: bytes, host: bytes, message: bytes, when: datetime | None, ref: datetime
) -> Parsed:
    """A journal entry's message as mlsd.ingest.logins reads a line: a login (with its
    queue id), a Queued, or None; `when` is the entry's time (None: not one a datetime
    can hold). A time after `ref` + a day is left to `logins.collect`. Never raises."""
    if len(message) > MAX_CANDIDATE_LINE:
        return None
    try:
        stamp = (*_GIVEN_TIME, host or None, program)
        result = login_of_message(stamp, message.rstrip(b"\r\n"), clock_for(ref, UTC))
    except Exception:  # pragma: no cover - the contract is "never raises"
        return None
    if result is None or when is None or not EARLIEST <= when <= LATEST:
        return None
    if isinstance(result, Queued):
        return result._replace(time=when)
    qid, login = result
    return qid, login._replace(time=when)
