"""`make run`: mlsd in the foreground with a development config under ./var/.

On a mail server it follows /var/log/mail.log (or LOG=path) with var/mlsd.conf (CSV in
var/mlsd.csv, state in var/state/). Where no readable mail log exists, it says so and
follows var/demo/mail.log with var/demo/mlsd.conf (CSV and state under var/demo/), feeding
that log at a live pace with real Postfix lines from the test corpus, restamped with the
current time, so that rows appear within seconds. The two never share a checkpoint or a
CSV, so switching between the demo and a real log works both ways. Each config file is
written only when missing and never rewritten: edit it freely. Ctrl-C stops both cleanly;
`kill -USR1 PID` prints the report of today so far (no [report] to is configured, so
nothing is mailed).

Run by the Makefile with the virtual environment's Python: `python contrib/demo/run.py
[--log PATH] [--var DIR] [--demo]`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[2]
# Real lines: MailLogSentinel's sample (public attacker IPs, so GeoIP has something to
# say) and a capture from a real Postfix 3.7 + Dovecot under attack.
CORPUS = (
    REPO / "tests/corpus/maillogsentinel/sample_sasl.log",
    REPO / "tests/corpus/lab/syslog-traditional-mail.log",
)
CLASSIC = re.compile(rb"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ")
SYSTEM_LOG = Path("/var/log/mail.log")
PACE = 0.25
"""Seconds between two demo lines: about one failure every second or two."""


def conf_text(log: Path, home: Path) -> str:
    """A development config: CSV and state under `home`, console logs, test GeoIP databases."""
    geoip = REPO / "tests/data/geoip"
    return (
        "# Written by `make run` (contrib/demo/run.py) because it was missing; edit freely,\n"
        "# it is never rewritten (remove it to get a fresh one).\n"
        f"[paths]\nmail_log = {log}\ncsv = {home / 'mlsd.csv'}\nstate_dir = {home / 'state'}\n"
        f"[geoip]\ncountry_db = {geoip / 'GeoLite2-Country-Test.mmdb'}\n"
        f"asn_db = {geoip / 'GeoLite2-ASN-Test.mmdb'}\n"
        "[log]\nlevel = INFO\nformat = auto\n"
        "[follow]\nreconcile_interval = 2\n"
    )


def demo_lines() -> list[bytes]:
    """Corpus lines with a classic syslog stamp, the stamp removed (it is redone live)."""
    out = []
    for path in CORPUS:
        for line in path.read_bytes().splitlines():
            if CLASSIC.match(line):
                out.append(line[16:])
    return out


def feed(path: Path, stop: threading.Event) -> None:
    """Append the corpus to `path` forever, one line every PACE seconds, stamped now."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = demo_lines()
    with open(path, "ab", buffering=0) as fh:
        for rest in itertools.cycle(lines):
            if stop.wait(PACE):
                return
            stamp = datetime.now().strftime("%b %e %H:%M:%S").encode()
            fh.write(stamp + b" " + rest + b"\n")


def readable(path: Path) -> bool:
    """Whether `path` is a file this user can read (a mail log worth following)."""
    return path.is_file() and os.access(path, os.R_OK)


def mail_log_of(conf: Path) -> Path | None:
    """The `[paths] mail_log` of an existing config, or None when it cannot be loaded (mlsd
    itself then says what is wrong with it)."""
    from mlsd import config  # noqa: PLC0415 - the venv's package, only needed here
    from mlsd.errors import ConfigError  # noqa: PLC0415

    try:
        return config.load(conf).paths.mail_log
    except (ConfigError, OSError):
        return None


class Choice(NamedTuple):
    """What to run: the config file, the log it follows, and whether we feed that log."""

    conf: Path
    log: Path
    demo: bool
    why: str = ""
    """Why the demo was chosen (printed)."""


def choose(wanted: str | None, var: Path, *, demo: bool, system: Path) -> Choice:
    """The real run (var/mlsd.conf) or the demo (var/demo/mlsd.conf); writes the chosen
    config only when it is missing. Raises SystemExit with a sentence when LOG asks for
    another log than an existing var/mlsd.conf follows (that file is the user's)."""
    home = var / "demo"

    def demo_choice(why: str) -> Choice:
        return Choice(home / "mlsd.conf", home / "mail.log", True, why)

    if demo:
        return demo_choice("--demo asked for it")
    conf = var / "mlsd.conf"
    log = Path(wanted).resolve() if wanted else None
    if conf.exists():
        current = mail_log_of(conf)
        if log is not None and current is not None and current != log:
            raise SystemExit(
                f"make run: {conf} follows {current}, not LOG={log}, and make run never "
                f"rewrites it: edit its [paths] mail_log (and give it another state_dir and "
                f"csv, or remove {var / 'state'}), or remove {conf} to have it written again"
            )
        if log is None:
            log = current if current is not None else system
            if log == home / "mail.log":
                return demo_choice(f"{conf} (written by an older make run) follows the demo log")
            if not readable(log):
                return demo_choice(f"{conf} follows {log}, which is not readable here")
        return Choice(conf, log, False)
    if log is None:
        if not readable(system):
            return demo_choice(f"no readable {system} here (and no LOG=path given)")
        log = system
    conf.write_text(conf_text(log, var))
    return Choice(conf, log, False)


def main() -> int:
    """Pick the real log or the demo, start the feeder if needed, run mlsd."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", default=os.environ.get("LOG") or None)
    ap.add_argument("--var", type=Path, default=REPO / "var")
    ap.add_argument("--demo", action="store_true", help="the demo log even on a mail server")
    args = ap.parse_args()
    var: Path = args.var.resolve()
    var.mkdir(mode=0o750, parents=True, exist_ok=True)
    conf, log, demo, why = choose(args.log, var, demo=args.demo, system=SYSTEM_LOG)
    if demo:
        print(
            f"make run: {why}: following a demo log, {log}, fed with real Postfix lines "
            "from the test corpus.",
            file=sys.stderr,
        )
        log.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        if not conf.exists():
            conf.write_text(conf_text(log, log.parent))
        log.touch()
    csv = var / "mlsd.csv"
    with contextlib.suppress(Exception):
        from mlsd import config  # noqa: PLC0415

        csv = config.load(conf).paths.csv
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(log, stop), daemon=True) if demo else None
    if feeder is not None:
        feeder.start()
    cmd = [sys.executable, "-m", "mlsd", "run", "-c", str(conf)]
    # mlsd in a process group of its own: a signal to ours (Ctrl-C in the terminal,
    # `timeout 15 make run`) reaches it once, from the forwarding below, not twice (the
    # group's copy and the forwarded one, which mlsd would take for an operator insisting).
    proc = subprocess.Popen(cmd, process_group=0)
    print(
        f"make run: mlsd pid {proc.pid}, config {conf}\n"
        f"  rows:        tail -f {csv}\n"
        f"  report now:  kill -USR1 {proc.pid}\n"
        f"  reload:      kill -HUP {proc.pid}   (after editing {conf})\n"
        "  stop:        Ctrl-C",
        file=sys.stderr,
        flush=True,
    )
    # Forwarded, each once: then wait for mlsd to finish cleanly (its "stopped" line).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _: proc.send_signal(signum))
    code = proc.wait()
    stop.set()
    if feeder is not None:
        feeder.join(timeout=2)
    return code


if __name__ == "__main__":
    time.tzset()
    sys.exit(main())
