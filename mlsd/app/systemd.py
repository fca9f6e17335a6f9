"""The systemd notify protocol (READY, STATUS, WATCHDOG, RELOADING, STOPPING), never blocking.

sdnotify does the socket work. Two things it does not do are done here: its socket is
made non-blocking (a stalled reader must drop a message, not freeze the event loop), and
every message is reduced to printable ASCII (sdnotify encodes latin-1, and systemd wants
UTF-8; attacker-chosen text can reach a STATUS= line). Without NOTIFY_SOCKET all of it is
a no-op.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from sdnotify import SystemdNotifier

from mlsd.untrusted import STATUS_MAX, status_line

# The rule is mlsd.untrusted's (printable ASCII, one line, capped); the names stay here
# for the callers and tests that use them.
ascii_status = status_line
__all__ = ["STATUS_MAX", "Notifier", "ascii_status", "watchdog_interval"]


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when not asked.

    systemd sets WATCHDOG_PID too; when it names another process the request is not ours.
    """
    env = os.environ if env is None else env
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000


class Notifier:
    """Sends sd_notify messages; a no-op when the service manager did not ask for them."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.dropped = 0
        """Messages the socket refused (reader stalled or gone): counted, never waited for."""
        self._notifier: SystemdNotifier | None = None
        if self.enabled:
            # sdnotify reads the address from the environment itself.
            notifier = SystemdNotifier(debug=False)
            if notifier.socket is None:
                self.enabled = False
            else:
                notifier.socket.setblocking(False)
                notifier.debug = True  # so that a refused send reaches our except below
                self._notifier = notifier

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields as one datagram; False if it was dropped."""
        if self._notifier is None:
            return False
        message = "\n".join(ascii_status(f) for f in fields)
        try:
            self._notifier.notify(message)
        except OSError:
            self.dropped += 1
            return False
        return True

    def ready(self, status: str) -> bool:
        """READY=1 with a status line."""
        return self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        """STATUS= alone."""
        return self.send(f"STATUS={status}")

    def watchdog(self) -> bool:
        """WATCHDOG=1: the event loop is alive."""
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """RELOADING=1 with the MONOTONIC_USEC= systemd needs to order it; READY=1 follows."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str) -> bool:
        """STOPPING=1: shutdown has begun."""
        return self.send("STOPPING=1", f"STATUS={status}")

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._notifier is not None and self._notifier.socket is not None:
            self._notifier.socket.close()
        self._notifier = None
