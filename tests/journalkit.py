"""Shared helpers for the journal source tests: real journal files, written without systemd.

`systemd-journal-remote --output=FILE -` reads journal export format on stdin and writes a
real journal file (appending when it exists), which `journalctl --directory` reads and
follows as it grows: no systemd as PID 1, no mocks. Entries are built here in export
format, binary fields (a MESSAGE that is not UTF-8) included, either numbered (the
username `seqNNNNNN`, as in tests.followkit) or from the corpus.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.followkit import Env

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
CORPUS = Path(__file__).parent / "corpus"
BOOT_ID = "5e1f0c0ffee04b1d9d5a7c3e2b8f4a60"

needs_journal = pytest.mark.skipif(
    not (os.access(JOURNAL_REMOTE, os.X_OK) and shutil.which("journalctl"))
    and not os.environ.get("CI"),
    reason="needs systemd-journal-remote and journalctl (Debian: systemd-journal-remote); "
    "CI installs them, and there this never skips",
)

Fields = dict[str, str | bytes]


def export(entries: Iterable[Fields]) -> bytes:
    """Journal export format: `KEY=value` lines, or the binary form (name, newline, little
    endian 64-bit length, bytes, newline) for a value that is not plain text; a blank line
    ends each entry."""
    out = bytearray()
    for fields in entries:
        for key, value in fields.items():
            raw = value.encode() if isinstance(value, str) else value
            if b"\n" in raw or not _printable(raw):
                out += key.encode() + b"\n" + struct.pack("<Q", len(raw)) + raw + b"\n"
            else:
                out += key.encode() + b"=" + raw + b"\n"
        out += b"\n"
    return bytes(out)


def _printable(raw: bytes) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return text.isprintable()


def now_us() -> int:
    """The wall clock in microseconds (entries are stamped in the recent past: plausible)."""
    return time.time_ns() // 1000


class Journal:
    """A directory of journal files, written by systemd-journal-remote."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.monotonic = 1_000_000
        self.base = now_us() - 3_600_000_000
        """Realtime of seq 0: an hour ago."""

    def stamp(self, fields: Fields, realtime: int | None = None) -> Fields:
        """`fields` with the trusted fields journald adds (realtime, monotonic, boot id)."""
        self.monotonic += 1000
        return {
            "__REALTIME_TIMESTAMP": str(realtime if realtime is not None else now_us()),
            "__MONOTONIC_TIMESTAMP": str(self.monotonic),
            "_BOOT_ID": BOOT_ID,
            "_HOSTNAME": "mx",
            **fields,
        }

    def write(self, entries: Iterable[Fields], name: str = "mail.journal") -> None:
        """Append `entries` (stamped by the caller) to the journal file `name`."""
        subprocess.run(
            [JOURNAL_REMOTE, f"--output={self.dir / name}", "-"],
            input=export(entries),
            capture_output=True,
            check=True,
            timeout=60,
        )

    def seq(self, seqs: Iterable[int], name: str = "mail.journal", *, noise: bool = True) -> None:
        """Append the numbered failures `seqs`, each followed by an entry of other traffic."""
        self.write(self.seq_entries(seqs, noise=noise), name)

    def seq_entries(self, seqs: Iterable[int], *, noise: bool = True) -> list[Fields]:
        """The stamped entries for `seqs` (see `seq`)."""
        out: list[Fields] = []
        for s in seqs:
            t = self.base + s * 1_000_000
            out.append(self.stamp(failure(s), t))
            if noise:
                out.append(self.stamp(NOISE, t + 1))
        return out

    def files(self) -> list[Path]:
        """The journal files, by name."""
        return sorted(self.dir.glob("*.journal"))

    def live(self, name: str = "mail.journal") -> Feeder:
        """A systemd-journal-remote that keeps running, fed through a pipe (a live journal)."""
        proc = subprocess.Popen(
            [JOURNAL_REMOTE, f"--output={self.dir / name}", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return Feeder(self, proc)


@dataclass
class Feeder:
    """A running systemd-journal-remote: what is written to it lands in the journal file."""

    journal: Journal
    proc: subprocess.Popen[bytes]

    def seq(self, seqs: Iterable[int]) -> None:
        """Write the numbered failures `seqs` (and their noise)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(export(self.journal.seq_entries(seqs)))
        self.proc.stdin.flush()

    def close(self) -> None:
        """End its input: it finishes the file and exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def failure(seq: int, *, unit: str = "postfix@-.service") -> Fields:
    """A Postfix SASL failure whose username is `seqNNNNNN`, as the journal holds it."""
    ip = f"10.{(seq >> 16) & 255}.{(seq >> 8) & 255}.{seq & 255}"
    return {
        "_SYSTEMD_UNIT": unit,
        "SYSLOG_IDENTIFIER": "postfix/smtpd",
        "_PID": "4242",
        "MESSAGE": f"warning: unknown[{ip}]: SASL LOGIN authentication failed: "
        f"(reason unavailable), sasl_username=seq{seq:06d}",
    }


NOISE: Fields = {
    "_SYSTEMD_UNIT": "postfix@-.service",
    "SYSLOG_IDENTIFIER": "postfix/smtpd",
    "MESSAGE": "connect from unknown[192.0.2.1]",
}


class JournalEnv(Env):
    """An installation reading the journal in `jdir` (tests.followkit.Env's files otherwise)."""

    def __init__(self, root: Path, match: str = "", **follow: str) -> None:
        self.journal = Journal(root / "journal")
        self.match = match
        super().__init__(root, **follow)

    def write_conf(self, follow: dict[str, str]) -> None:
        """(Re)write the config file: a journal source, these `[follow]` keys."""
        body = "\n".join(f"{k} = {v}" for k, v in follow.items())
        match = f"journal_match = {self.match}\n" if self.match else ""
        self.conf.write_text(
            f"[paths]\nmail_log = {self.log}\ncsv = {self.csv}\nstate_dir = {self.state}\n"
            f"[source]\ntimezone = UTC\ntype = journal\njournal_directory = {self.journal.dir}\n"
            f"{match}[log]\nlevel = DEBUG\nformat = auto\n[follow]\n{body}\n{self.extra}"
        )


# ---- the corpus, as the journal would hold it

_HEADER = re.compile(
    r"(?:(?P<classic>[A-Z][a-z]{2} +\d{1,2} \d\d:\d\d:\d\d)|(?P<iso>\d{4}-\d\d-\d\d[T ]\S+))"
    r" (?:(?P<host>[^\s:\[]+) )?(?P<prog>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: (?P<msg>.*)"
)


@dataclass(frozen=True)
class Converted:
    """A corpus line as a journal entry, and the syslog line that says the same."""

    fields: Fields
    line: bytes
    """`ISO-time host ident[pid]: message`: what the file source reads for the entry."""


def corpus_lines() -> Iterator[str]:
    """Every line of every corpus log."""
    for log in sorted(CORPUS.glob("*/*.log")):
        yield from log.read_text(encoding="utf-8").splitlines()


def convert(line: str | bytes, realtime: int) -> Converted | None:
    """A syslog-form line as Postfix or Dovecot would have logged it to the journal (None
    for a form that has no header to take apart, or that only rsyslog writes). Dovecot's
    own log file names the process (`imap-login: Info: …`); through syslog it is
    `dovecot` and the process starts the message, without the level."""
    raw = line.encode() if isinstance(line, str) else line
    m = _HEADER.fullmatch(raw.decode("utf-8", "surrogateescape"))
    if m is None:
        return None
    prog = m["prog"]
    msg = m["msg"].encode("utf-8", "surrogateescape")
    if msg.startswith(b"message repeated "):
        return None  # rsyslog folds repeats in its files; the journal holds each message
    if prog.endswith("-login") or prog.startswith(("auth", "master")):
        msg = f"{prog}: ".encode() + msg.removeprefix(b"Info: ")
        prog = "dovecot"
    elif not prog.startswith("postfix") and prog != "dovecot":
        return None
    host = m["host"] or "mx"
    unit = "dovecot.service" if prog == "dovecot" else "postfix@-.service"
    fields: Fields = {
        "_HOSTNAME": host,
        "_SYSTEMD_UNIT": unit,
        "SYSLOG_IDENTIFIER": prog,
        "MESSAGE": msg,
    }
    if m["pid"]:
        fields["_PID"] = m["pid"]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(realtime // 1_000_000))
    iso = f"{stamp}.{realtime % 1_000_000:06d}+00:00"
    pid = f"[{m['pid']}]" if m["pid"] else ""
    return Converted(fields, f"{iso} {host} {prog}{pid}: ".encode() + msg + b"\n")
