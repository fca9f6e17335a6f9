"""Which lines of a block of log bytes can become a result: the needles, and one search.

~97 % of a mail log is normal traffic. Every line mlsd.ingest.grammar can turn into a
result (or count as a skip) holds one of NEEDLES; a successful login holds one of
SUCCESS_NEEDLES. Finding them costs a `bytes.find` pass over the whole block at memory
speed, not a Python round per line. Pure: no I/O, nothing raises.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "DOVECOT_NEEDLES",
    "FAILURES",
    "NEEDLES",
    "QUEUED",
    "RARE_NEEDLES",
    "SUCCESSES",
    "SUCCESS_NEEDLES",
    "Search",
    "candidate_lines",
    "candidate_spans",
    "is_success",
    "success_lines",
]

# Every line mlsd.ingest.grammar can turn into a result contains one of these. None contains
# another, so a line is found by the needle(s) it holds and by nothing else.
NEEDLES: tuple[bytes, ...] = (
    b"authentication failed",
    b"auth failed",
    # Dovecot 2.4's wording of 2.3's `(proxy dest auth failed)`: the next hop refused.
    b"proxy dest authentication failure",
    # Dovecot's login processes, when the auth service failed (Skip.SERVER_ERROR).
    b"auth service reported temporary failure",
    b"auth process communication failure",
)
# The needles that make a line Dovecot's rather than Postfix's, and the rarer ones.
DOVECOT_NEEDLES: tuple[bytes, ...] = NEEDLES[1:]
RARE_NEEDLES = NEEDLES[2:]
# Successful logins: Postfix's `client=…, sasl_method=PLAIN, sasl_username=u` and Dovecot's
# `imap-login: Login: user=<u>` (with or without `Info: `).
SUCCESS_NEEDLES: tuple[bytes, ...] = (b"sasl_username=", b"Login: user=<")
# (is_success spells both out: it runs on every login line.)


class Search(NamedTuple):
    """Needles found through one anchor that all of them contain: one pass over a block
    instead of one per needle (each pass costs as much as a third of a bare read loop)."""

    anchor: bytes
    needles: tuple[tuple[bytes, int], ...]
    """Each needle with the offset of the anchor inside it."""
    pattern: re.Pattern[bytes]
    """The anchor as a compiled literal: its `search` finds the next anchor in a block
    faster than `bytes.find` does (see candidate_spans)."""


def _search(anchor: bytes, needles: tuple[bytes, ...]) -> Search:
    for needle in needles:
        if anchor not in needle or b"\n" in needle:
            raise ValueError(f"{anchor!r} must be in {needle!r}, and no needle holds a newline")
    pattern = re.compile(re.escape(anchor))
    return Search(anchor, tuple((n, n.index(anchor)) for n in needles), pattern)


FAILURES = _search(b" fail", NEEDLES)
_FAIL = FAILURES.anchor
SUCCESSES = _search(b"user", SUCCESS_NEEDLES)
# qmgr's `QUEUEID: from=<…>, size=…, nrcpt=N (queue active)`: a submission's recipients,
# joined to its smtpd `sasl_username=` line (mlsd.ingest.logins). Searched for only while
# such a line waits for its qmgr line.
QUEUED = _search(b"nrcpt=", (b", nrcpt=",))


def candidate_lines(buf: bytes, search: Search = FAILURES, start: int = 0) -> list[bytes]:
    """The lines of `buf` (complete, `\n`-terminated) that contain a needle, in order.

    `start` must be 0 or just after a `\n`: a caller that handled the first line itself
    (one that began in the previous block) passes where the next one starts.

    ~97 % of a mail log is normal traffic. Searching a whole block with `bytes.find`
    runs at memory speed; a Python loop over every line would cost a bytecode round
    per line. Each returned line includes its `\n`. Bytes after the last `\n` are
    never returned: a partial line is the caller's to keep until it is complete.
    """
    return [line for _, line in candidate_spans(buf, search, start)]


def candidate_spans(buf: bytes, search: Search, start: int = 0) -> list[tuple[int, bytes]]:
    """`candidate_lines` with each line's offset in `buf`: lines found by two searches
    can then be read in log order (mlsd.ingest.logins joins qmgr lines to smtpd ones)."""
    end = buf.rfind(b"\n") + 1
    _, needles, pattern = search
    # The anchor is sought with re, not bytes.find: this search is a pass over every
    # byte read, and for these short anchors re's is 15-30 % faster (the bench log:
    # b" fail" 85 -> 69 ms, b"user" 103 -> 73 ms, b"nrcpt=" 88 -> 72 ms).
    seek = pattern.search
    find, rfind, startswith = buf.find, buf.rfind, buf.startswith
    out = []
    m = seek(buf, start, end)
    while m is not None:
        i = m.start()
        for needle, at in needles:
            # A needle has no newline, so one that holds this anchor is on the anchor's line.
            if i - at >= start and startswith(needle, i - at):
                stop = find(b"\n", i, end) + 1
                begin = rfind(b"\n", 0, i) + 1
                out.append((begin, buf[begin:stop]))
                m = seek(buf, stop, end)  # the rest of this line is already taken
                break
        else:
            m = seek(buf, i + 1, end)
    return out


def success_lines(buf: bytes) -> list[bytes]:
    """The complete lines of `buf` that log a successful login (see Skip.SUCCESS)."""
    return [line for line in candidate_lines(buf, SUCCESSES) if is_success(line)]


def is_success(line: bytes) -> bool:
    """Whether one line logs a successful login (a failure line quoting one is a failure).

    Called on every login line of a block: two substring searches for a line without
    ` fail` (every failure needle holds FAILURES' anchor), no generator."""
    if b"sasl_username=" not in line and b"Login: user=<" not in line:
        return False
    return _FAIL not in line or not any(n in line for n in NEEDLES)
