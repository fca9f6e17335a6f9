"""The notify wrapper against a real datagram socket bound in a temp directory."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsd.app.systemd import Notifier, ascii_status, watchdog_interval


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    old = os.environ.get("NOTIFY_SOCKET")
    os.environ["NOTIFY_SOCKET"] = str(path)
    try:
        yield sock, {"NOTIFY_SOCKET": str(path)}
    finally:
        sock.close()
        if old is None:
            del os.environ["NOTIFY_SOCKET"]
        else:
            os.environ["NOTIFY_SOCKET"] = old


def test_ready_status_and_stopping_arrive(
    notify_socket: tuple[socket.socket, dict[str, str]],
) -> None:
    """READY=1 with STATUS, then STOPPING=1, arrive as datagrams."""
    sock, env = notify_socket
    n = Notifier(env)
    assert n.ready("following /var/log/mail.log")
    assert n.stopping("stopping")
    assert b"READY=1\nSTATUS=following /var/log/mail.log" == sock.recv(4096)
    assert b"STOPPING=1\nSTATUS=stopping" == sock.recv(4096)


def test_reloading_carries_monotonic_usec(
    notify_socket: tuple[socket.socket, dict[str, str]],
) -> None:
    """RELOADING=1 comes with MONOTONIC_USEC= as systemd requires."""
    sock, env = notify_socket
    Notifier(env).reloading()
    fields = sock.recv(4096).decode().split("\n")
    assert "RELOADING=1" == fields[0]
    assert fields[1].startswith("MONOTONIC_USEC=") and int(fields[1].split("=")[1]) > 0


def test_attacker_text_in_status_is_ascii(
    notify_socket: tuple[socket.socket, dict[str, str]],
) -> None:
    """Non-ASCII, newlines and escapes in a status never make an invalid or extra field."""
    sock, env = notify_socket
    Notifier(env).status("last user: \u00e9\x1b[2J\nREADY=1 \u202e")
    data = sock.recv(4096)
    assert b"STATUS=last user: ??[2J?READY=1 ?" == data
    data.decode("utf-8")


def test_a_stalled_reader_never_blocks(notify_socket: tuple[socket.socket, dict[str, str]]) -> None:
    """With nobody reading, sends are dropped and counted, not waited for."""
    _, env = notify_socket
    n = Notifier(env)
    results = [n.status("x" * 150) for _ in range(5000)]
    assert not all(results) and n.dropped == results.count(False)


def test_no_socket_is_a_no_op() -> None:
    """Without NOTIFY_SOCKET nothing is sent and nothing fails."""
    n = Notifier({})
    assert (False, False) == (n.enabled, n.ready("x"))


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(
    env: dict[str, str], expected: float | None
) -> None:
    """Ping at half the watchdog period, only when the request is for this process."""
    assert expected == watchdog_interval(env)


def test_ascii_status_caps_length() -> None:
    """A status line is capped."""
    assert 200 == len(ascii_status("y" * 1000))
