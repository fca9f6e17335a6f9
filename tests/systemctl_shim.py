"""A stand-in for `systemctl` in tests/test_troubleshooting.py, where no systemd runs.

It does what contrib/systemd/mlsd.service tells systemd to do, and nothing it cannot:
start runs ExecStart (`mlsd run -c CONF`) and waits for the start-up line, stop sends
SIGTERM and waits for the exit, reload sends SIGHUP (ExecReload), `kill -s SIG` sends SIG.
`status` needs systemd itself: it exits 97, which the test reports as "not run".
Environment: MLSD_SHIM_CONF (the config), MLSD_SHIM_DIR (pid file and the daemon's stderr).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NOT_RUN = 97


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main(argv: list[str]) -> int:
    conf = os.environ["MLSD_SHIM_CONF"]
    where = Path(os.environ["MLSD_SHIM_DIR"])
    pidfile, errlog = where / "mlsd.pid", where / "mlsd-run.err"
    verb = argv[0]
    words = [a for a in argv[1:] if not a.startswith("-")]
    unit = words[-1] if words else ""
    if unit != "mlsd":
        print(f"systemctl (test stand-in): unit {unit} not known", file=sys.stderr)
        return 5
    if verb == "status":
        print("systemctl status: not run here (needs systemd as PID 1)", file=sys.stderr)
        return NOT_RUN
    if verb == "start":
        seen = errlog.stat().st_size if errlog.exists() else 0
        with open(errlog, "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mlsd", "run", "-c", conf],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        pidfile.write_text(str(proc.pid))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with open(errlog, "rb") as fh:
                fh.seek(seen)
                if b" started config=" in fh.read():
                    return 0
            if proc.poll() is not None:
                return 1
            time.sleep(0.05)
        return 1
    pid = int(pidfile.read_text())
    if verb == "stop":
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        return 1 if _alive(pid) else 0
    if verb == "reload":
        os.kill(pid, signal.SIGHUP)
        return 0
    if verb == "kill" and argv[1] == "-s":
        name = argv[2] if argv[2].startswith("SIG") else "SIG" + argv[2]
        os.kill(pid, signal.Signals[name])
        return 0
    print(f"systemctl (test stand-in): {' '.join(argv)} not supported", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
