"""Shared helpers for the follower tests: sequence-numbered lines, a writer, mlsd as a process.

Every auth-failure line carries its sequence number in the username (`seq000123`), so a
test states the exact multiset of rows it expects and compares `Counter`s: a lost line and
a repeated line both show up as a difference.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import structlog

from mlsd import logs

LOGROTATE = "/usr/sbin/logrotate"
# Plain console logs whatever the test runner's environment says.
ENV = {
    k: v
    for k, v in os.environ.items()
    if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
}
STARTED = " started config="
"""In mlsd's start-up summary line, once the reader is placed."""


def auth_line(seq: int, *, host: str = "srv") -> bytes:
    """One Postfix SASL failure whose username is `seqNNNNNN`."""
    ip = f"10.{(seq >> 16) & 255}.{(seq >> 8) & 255}.{seq & 255}"
    return (
        f"Nov 25 05:{(seq // 60) % 60:02d}:{seq % 60:02d} {host} postfix/smtpd[4242]: "
        f"warning: unknown[{ip}]: SASL LOGIN authentication failed: "
        f"(reason unavailable), sasl_username=seq{seq:06d}\n"
    ).encode()


def now_line(user: str, ip: str = "192.0.2.7") -> bytes:
    """A Postfix SASL failure stamped now, in UTC (the tests' [source] timezone): for what
    counts "today" (status, reports)."""
    stamp = datetime.now(UTC).strftime("%b %e %H:%M:%S")
    return (
        f"{stamp} mx postfix/smtpd[4242]: warning: unknown[{ip}]: SASL LOGIN authentication "
        f"failed: UGFzc3dvcmQ6, sasl_username={user}\n"
    ).encode()


class Said(NamedTuple):
    """One log line mlsd said in this process."""

    level: str
    """`info`, `warning`, `error`, …"""
    text: str
    """As the journal shows it, without its `<N>` priority: `gap generation=… reason="…"`."""


def journal_text(level: str, event: MutableMapping[str, Any]) -> str:
    """A structlog event as the journal shows it, without its `<N>` priority."""
    return logs.JournalRenderer()(None, level, dict(event)).split(">", 1)[1]


@contextmanager
def logged() -> Iterator[list[Said]]:
    """Every line mlsd's loggers say inside the block, whatever the level and however (or
    whether) logging is configured in this process."""
    said: list[Said] = []

    def keep(_: Any, level: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        said.append(Said(level, journal_text(level, event)))
        raise structlog.DropEvent

    with structlog.testing.capture_logs(processors=[keep]):
        yield said


NOISE = b"Nov 25 05:00:00 srv postfix/smtpd[4242]: connect from unknown[192.0.2.1]\n"


def lines(seqs: Iterable[int], *, noise: bool = True) -> bytes:
    """The lines for `seqs`, each followed by a line of ordinary traffic."""
    return b"".join(auth_line(s) + (NOISE if noise else b"") for s in seqs)


def users(seqs: Iterable[int]) -> Counter[str]:
    """The expected multiset of CSV usernames."""
    return Counter(f"seq{s:06d}" for s in seqs)


class Writer:
    """A syslog daemon: keeps its descriptor (O_APPEND) until told to reopen (postrotate)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.reopen()

    def reopen(self) -> None:
        """Close the old descriptor and open (or create) the path again."""
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def write(self, data: bytes) -> None:
        """Append everything (one write call per call, like a syslog daemon's record)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def seq(self, seqs: Iterable[int]) -> None:
        """Append the lines for `seqs`."""
        self.write(lines(seqs))

    def close(self) -> None:
        """Close the descriptor."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class Env:
    """A temporary installation: log directory, state directory, CSV and config."""

    def __init__(self, root: Path, **follow: str) -> None:
        self.root = root
        self.logdir = root / "log"
        self.logdir.mkdir(mode=0o755, exist_ok=True)
        self.log = self.logdir / "mail.log"
        self.csv = root / "out" / "mlsd.csv"
        self.state = root / "state"
        self.conf = root / "mlsd.conf"
        self.rotate_state = root / "logrotate.state"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra = ""
        """More config sections, appended as they are (e.g. `[report]`, `[smtp]`)."""
        opts = {"rotate_grace": "1.0", "reconcile_interval": "1", **follow}
        self.write_conf(opts)

    def write_conf(self, follow: dict[str, str]) -> None:
        """(Re)write the config file with these `[follow]` keys."""
        body = "\n".join(f"{k} = {v}" for k, v in follow.items())
        self.conf.write_text(
            f"[paths]\nmail_log = {self.log}\ncsv = {self.csv}\nstate_dir = {self.state}\n"
            f"[source]\ntimezone = UTC\n[log]\nlevel = DEBUG\nformat = auto\n"
            f"[follow]\n{body}\n{self.extra}"
        )

    # ---- mlsd

    def cmd(self, *args: str) -> list[str]:
        """The argv for `mlsd ARGS -c CONF`."""
        return [sys.executable, "-m", "mlsd", *args, "-c", str(self.conf)]

    def scan(self, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `mlsd scan` to completion."""
        res = subprocess.run(
            self.cmd("scan"), capture_output=True, text=True, timeout=120, check=False, env=ENV
        )
        if check and res.returncode != 0:
            raise AssertionError(f"mlsd scan failed ({res.returncode}):\n{res.stderr}")
        return res

    def start(
        self, *, wait: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `mlsd run` and (by default) wait until it has placed its reader."""
        with open(self.root / f"run{len(self.procs)}.err", "wb") as errlog:
            proc = subprocess.Popen(
                self.cmd("run"),
                stdout=subprocess.DEVNULL,
                stderr=errlog,
                env={**ENV, **(env or {})},
            )
        self.procs.append(proc)
        if wait:
            wait_for(lambda: STARTED in self.stderr(proc) or proc.poll() is not None)
        return proc

    def stderr(self, proc: subprocess.Popen[bytes]) -> str:
        """What `proc` wrote to stderr so far."""
        idx = self.procs.index(proc)
        return (self.root / f"run{idx}.err").read_text(errors="replace")

    def all_stderr(self) -> str:
        """stderr of every `mlsd run` of this test."""
        return "".join(self.stderr(p) for p in self.procs)

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        """Send `sig` and wait for the exit code."""
        proc.send_signal(sig)
        return proc.wait(timeout=60)

    def cleanup(self) -> None:
        """Kill whatever is still running."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    # ---- results

    def rows(self) -> Counter[str]:
        """The multiset of usernames in the CSV."""
        if not self.csv.exists():
            return Counter()
        with open(self.csv, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh, delimiter=";")
            return Counter(r["user"] for r in reader)

    def wait_rows(self, expected: Counter[str], timeout: float = 30.0) -> None:
        """Wait until the CSV holds exactly `expected` (or time out and show the diff)."""
        try:
            wait_for(lambda: self.rows() == expected, timeout)
        except AssertionError:
            got = self.rows()
            raise AssertionError(
                f"missing={sorted((expected - got).elements())[:20]} "
                f"extra={sorted((got - expected).elements())[:20]}\n{self.all_stderr()[-4000:]}"
            ) from None

    # ---- rotation

    def logrotate_argv(self, *options: str, keep: int = 9) -> list[str]:
        """Write the logrotate config for `options`; the argv of a forced rotation with it."""
        conf = self.root / "logrotate.conf"
        body = "\n".join(f"    {o}" for o in options)
        conf.write_text(
            textwrap.dedent(f"{self.log} {{\n    rotate {keep}\n    missingok\n{body}\n}}\n")
        )
        os.chmod(conf, 0o644)
        return [LOGROTATE, "-f", "-s", str(self.rotate_state), str(conf)]

    def logrotate(
        self, *options: str, keep: int = 9, tz: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the real logrotate, forced, with its own state file.

        `tz` sets its local time zone (which moves the dates `dateext` puts in names);
        without `check`, a refused rotation is returned rather than failing the test.
        """
        res = subprocess.run(
            self.logrotate_argv(*options, keep=keep),
            capture_output=True,
            text=True,
            check=False,
            env={**ENV, "TZ": tz} if tz else None,
        )
        assert res.returncode == 0 or not check, res.stderr
        return res


def wait_for(cond: object, timeout: float = 30.0, step: float = 0.05) -> None:
    """Poll `cond()` until true; a bounded wait, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def kill9(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
