"""The follower's down-time scenarios as data: each a script of steps and its one expectation.

A scenario writes sequence-numbered lines (tests.followkit), rotates with the real logrotate,
and catches up in between with `mlsd scan`'s own code run in this process (the session's
open → scan → close, without a Python start-up per scan); the CSV must then hold exactly
the expected multiset of rows, no line lost and none repeated. A few scenarios keep real
`mlsd scan` subprocesses (tests/test_follow_down.py) so the command itself stays covered.

Steps (one string each):
    write A-B        lines A … B-1 appended by the writer (the syslog daemon's descriptor)
    torn N K         the first K bytes of line N (no newline yet)
    rest N K         the rest of line N after its first K bytes
    raw TEXT         a line of other text
    scan             catch up, commit, close (as `mlsd scan`)
    rotate OPT;OPT   the real logrotate, forced, with these directives
    reopen           the writer closes and opens the path again (postrotate)
    truncate         the live file cut to 0 bytes in place (no copy)
    recreate         the writer closes, the log is deleted and created anew
    sleep S          wait S seconds (dateext names are per second)
    gap              the last scan logged a gap
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlsd import config
from mlsd.enrich.enricher import Enricher
from mlsd.enrich.geo import Geo
from mlsd.ingest import session
from tests.followkit import Env, Said, Writer, lines, logged, users


@dataclass(frozen=True)
class Scenario:
    """A script and the sequence numbers the CSV holds after it, each exactly once."""

    script: str
    """The steps, separated by `|`."""
    expect: tuple[range, ...]
    why: str


SCENARIOS: dict[str, Scenario] = {
    "partial-line-completed-while-down": Scenario(
        ("write 0-5 | torn 5 40 | scan | rest 5 40 | write 6-9 | scan"),
        (range(9),),
        "a line cut mid-way is not parsed; once completed (mlsd down) it becomes one row",
    ),
    "nothing-new-is-idempotent": Scenario(
        ("write 0-7 | scan | scan"),
        (range(7),),
        "scanning twice with nothing new adds nothing",
    ),
    "create-down-once": Scenario(
        (
            "write 0-10 | scan | write 10-20 | rotate create | write 20-25 | reopen | write 25-30 "
            "| scan"
        ),
        (range(30),),
        "logrotate create while down; the writer appends to the old inode before reopening",
    ),
    "create-down-twice": Scenario(
        (
            "write 0-10 | scan | write 10-20 | rotate create | reopen | write 20-30 | rotate "
            "create | reopen | write 30-40 | scan"
        ),
        (range(40),),
        "two rotations while down: .2 from the offset, all of .1, then the live file",
    ),
    "delaycompress-down-twice": Scenario(
        (
            "write 0-10 | scan | write 10-20 | rotate create;compress;delaycompress | reopen | "
            "write 20-30 | rotate create;compress;delaycompress | reopen | write 30-40 | scan"
        ),
        (range(40),),
        "compress + delaycompress, down across two rotations: the unread rest is in .2.gz",
    ),
    "compress-down-once": Scenario(
        ("write 0-10 | scan | write 10-20 | rotate create;compress | reopen | write 20-25 | scan"),
        (range(25),),
        "compress without delay: the checkpointed generation is found by its decompressed head",
    ),
    "dateext-down": Scenario(
        (
            "write 0-10 | scan | write 10-20 | rotate create;dateext;dateformat -%Y%m%d%H%M%S | "
            "reopen | write 20-30 | sleep 1.1 | rotate create;dateext;dateformat -%Y%m%d%H%M%S | "
            "reopen | write 30-35 | scan"
        ),
        (range(35),),
        "dateext names (mail.log-YYYYMMDD…), two rotations",
    ),
    "dateext-compressed-down": Scenario(
        (
            "write 0-10 | scan | write 10-20 | rotate create;dateext;dateformat "
            "-%Y%m%d%H%M%S;compress | reopen | write 20-30 | sleep 1.1 | rotate "
            "create;dateext;dateformat -%Y%m%d%H%M%S;compress | reopen | write 30-35 | scan"
        ),
        (range(35),),
        "dateext names, compressed, two rotations",
    ),
    "copytruncate-down-once": Scenario(
        ("write 0-10 | scan | write 10-20 | rotate copytruncate | write 20-30 | scan"),
        (range(30),),
        "copytruncate while down: the rest is read from the copy at the old offset",
    ),
    "copytruncate-down-twice-compressed": Scenario(
        (
            "write 0-10 | scan | write 10-20 | rotate copytruncate;compress;delaycompress | write "
            "20-30 | rotate copytruncate;compress;delaycompress | write 30-40 | scan"
        ),
        (range(40),),
        "two copytruncates with compress + delaycompress while down",
    ),
    "truncate-regrow-past-offset": Scenario(
        ("write 0-10 | scan | write 10-15 | truncate | write 100-130 | scan | gap"),
        (
            range(10),
            range(100, 130),
        ),
        "truncated in place without a copy and regrown past the offset: a logged gap, the "
        "new content read from its first byte, never from the middle of a line",
    ),
    "inode-reuse": Scenario(
        ("write 0-10 | scan | write 10-12 | recreate | write 200-230 | scan | gap"),
        (
            range(10),
            range(200, 230),
        ),
        "the log deleted and created again (often the same inode number): a new "
        "generation, read from 0; the old one's unread tail is reported",
    ),
    "identical-heads": Scenario(
        (
            "raw restart | scan | write 0-10 | rotate create | reopen | raw restart | write 10-20 "
            "| scan"
        ),
        (range(20),),
        "two generations that start with the same bytes: told apart by inode, not by head",
    ),
    "compress-switched-on-while-down": Scenario(
        (
            "write 0-5 | scan | write 5-10 | rotate create | reopen | write 10-20 | rotate create "
            "| reopen | write 20-30 | rotate create;compress;delaycompress | reopen | write 30-40 "
            "| rotate create;compress;delaycompress | reopen | write 40-45 | scan"
        ),
        (range(45),),
        "compress turned on leaves logrotate's names out of order (a plain .2 older than "
        ".3.gz): generations are taken in last-write order",
    ),
}


def _scan(conf: Path) -> list[Said]:
    """`mlsd scan`'s catch-up, in this process; what it logged."""
    cfg = config.load(conf)

    async def catch_up() -> None:
        enricher = Enricher(cfg, Geo(cfg.geoip))
        try:
            opened = session.open_session(cfg, enricher, first_start=session.BACKLOG)
            try:
                await session.scan(opened)
            finally:
                session.close_session(opened)
        finally:
            await enricher.close()

    with logged() as said:
        asyncio.run(catch_up())
    return said


def play(env: Env, script: str) -> None:
    """Run a scenario's steps against `env`."""
    w = Writer(env.log)
    said: list[Said] = []
    for step in (s.strip() for s in script.split("|")):
        verb, _, arg = step.partition(" ")
        if verb == "write":
            first, last = (int(n) for n in arg.split("-"))
            w.seq(range(first, last))
        elif verb in ("torn", "rest"):
            seq, cut = (int(n) for n in arg.split())
            line = lines([seq])
            w.write(line[:cut] if verb == "torn" else line[cut:])
        elif verb == "raw":
            w.write(f"Nov 25 00:00:00 srv syslogd: {arg}\n".encode())
        elif verb == "scan":
            said = _scan(env.conf)
        elif verb == "rotate":
            env.logrotate(*arg.split(";"))
        elif verb == "reopen":
            w.reopen()
        elif verb == "truncate":
            os.truncate(env.log, 0)
        elif verb == "recreate":
            w.close()
            env.log.unlink()
            w = Writer(env.log)
        elif verb == "sleep":
            time.sleep(float(arg))
        elif verb == "gap":
            assert any(s.text.startswith("gap ") for s in said), said
        else:
            raise AssertionError(f"unknown step {step!r}")
    w.close()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario(env: Env, name: str) -> None:
    """The CSV holds exactly the scenario's rows: none lost, none repeated."""
    s = SCENARIOS[name]
    play(env, s.script)
    expected: Counter[str] = Counter()
    for part in s.expect:
        expected += users(part)
    assert env.rows() == expected, s.why


def test_an_unknown_step_is_refused(env: Env) -> None:
    """A typo in a script fails its scenario instead of being skipped."""
    with pytest.raises(AssertionError, match="unknown step"):
        play(env, "wrte 0-3")


def test_a_missing_gap_fails(env: Env) -> None:
    """`gap` checks what the last scan said: a clean catch-up does not pass it."""
    with pytest.raises(AssertionError):
        play(env, "write 0-3 | scan | gap")
