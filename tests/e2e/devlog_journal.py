"""What journald does with /dev/log, for the e2e suite's journal variant: syslog datagrams
in, journal entries out, written by systemd-journal-remote into a real journal file.

Usage: python -m tests.e2e.devlog_journal SOCKET JOURNAL_FILE

Each datagram (`<PRI>Mmm dd HH:MM:SS ident[pid]: message`, as syslog(3) sends it) becomes
an entry with the fields journald gives it: SYSLOG_FACILITY, PRIORITY,
SYSLOG_IDENTIFIER, SYSLOG_PID, MESSAGE (bytes as sent), _TRANSPORT=syslog, the host name,
the boot id, and the time of receipt. No systemd as PID 1 is needed; journalctl reads the
file as it reads journald's.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import FrameType

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
_SYSLOG = re.compile(
    rb"<(\d{1,3})>(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d )?([^\s\[:]+)(?:\[(\d+)\])?: ?(.*)",
    re.S,
)


def field(name: bytes, value: bytes) -> bytes:
    """One field in journal export format (binary-safe form when needed)."""
    if b"\n" in value or any(b < 32 and b != 9 for b in value):
        return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return name + b"=" + value + b"\n"


def entry(datagram: bytes, boot: bytes, host: bytes) -> bytes | None:
    """A syslog datagram as a journal entry, or None when it is not one."""
    m = _SYSLOG.fullmatch(datagram.rstrip(b"\n"))
    if m is None:
        return None
    pri = int(m[1])
    fields = [
        field(b"__REALTIME_TIMESTAMP", str(time.time_ns() // 1000).encode()),
        field(b"__MONOTONIC_TIMESTAMP", str(time.monotonic_ns() // 1000).encode()),
        field(b"_BOOT_ID", boot),
        field(b"_HOSTNAME", host),
        field(b"_TRANSPORT", b"syslog"),
        field(b"PRIORITY", str(pri & 7).encode()),
        field(b"SYSLOG_FACILITY", str(pri >> 3).encode()),
        field(b"SYSLOG_IDENTIFIER", m[2]),
        field(b"MESSAGE", m[4]),
    ]
    if m[3]:
        fields.append(field(b"SYSLOG_PID", m[3]))
    return b"".join(fields) + b"\n"


def main() -> None:
    path, out = Path(sys.argv[1]), Path(sys.argv[2])
    with_remote = subprocess.Popen([JOURNAL_REMOTE, f"--output={out}", "-"], stdin=subprocess.PIPE)
    assert with_remote.stdin is not None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    os.chmod(path, 0o666)  # noqa: S103 - every daemon may log, as to journald's socket
    boot = uuid.uuid4().hex.encode()
    host = socket.gethostname().encode()
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        sock.close()

    signal.signal(signal.SIGTERM, stop)
    try:
        while not stopping:
            try:
                data = sock.recv(65536)
            except OSError:
                break
            e = entry(data, boot, host)
            if e is not None:
                with_remote.stdin.write(e)
                with_remote.stdin.flush()
    finally:
        with_remote.stdin.close()
        with_remote.wait(timeout=30)
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
