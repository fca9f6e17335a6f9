"""`make run`: mlsd in the foreground with a development config under ./var/.

On a mail server it follows /var/log/mail.log (or LOG=path). Where no readable mail log
exists, it says so and follows var/demo/mail.log, which it feeds at a live pace with real
Postfix lines from the test corpus, restamped with the current time, so that rows appear
in var/mlsd.csv within seconds. Ctrl-C stops both cleanly; `kill -USR1 PID` prints the
report of today so far (no [report] to is configured, so nothing is mailed).

Run by the Makefile with the virtual environment's Python: `python contrib/demo/run.py
[--log PATH] [--var DIR]`.
"""

from __future__ import annotations

import argparse
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

REPO = Path(__file__).resolve().parents[2]
# Real lines: MailLogSentinel's sample (public attacker IPs, so GeoIP has something to
# say) and a capture from a real Postfix 3.7 + Dovecot under attack.
CORPUS = (
    REPO / "tests/corpus/maillogsentinel/sample_sasl.log",
    REPO / "tests/corpus/lab/syslog-traditional-mail.log",
)
CLASSIC = re.compile(rb"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ")
PACE = 0.25
"""Seconds between two demo lines: about one failure every second or two."""


def conf_text(log: Path, var: Path) -> str:
    """The development config: everything under var/, console logs, test GeoIP databases."""
    geoip = REPO / "tests/data/geoip"
    return (
        "# Written by `make run` (contrib/demo/run.py); edit freely, it is rewritten only\n"
        "# when missing.\n"
        f"[paths]\nmail_log = {log}\ncsv = {var / 'mlsd.csv'}\nstate_dir = {var / 'state'}\n"
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


def pick_log(wanted: str | None) -> tuple[Path, bool]:
    """The log to follow, and whether it is the demo log that we feed ourselves."""
    if wanted:
        return Path(wanted).resolve(), False
    system = Path("/var/log/mail.log")
    if os.access(system, os.R_OK):
        return system, False
    return Path(), True


def main() -> int:
    """Write var/mlsd.conf when missing, start the feeder if needed, run mlsd."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", default=os.environ.get("LOG") or None)
    ap.add_argument("--var", type=Path, default=REPO / "var")
    ap.add_argument("--demo", action="store_true", help="the demo log even on a mail server")
    args = ap.parse_args()
    var: Path = args.var.resolve()
    var.mkdir(mode=0o750, parents=True, exist_ok=True)
    log, demo = (Path(), True) if args.demo else pick_log(args.log)
    if demo:
        log = var / "demo" / "mail.log"
        print(
            "make run: no readable /var/log/mail.log here (and no LOG=path given): following "
            f"a demo log, {log}, fed with real Postfix lines from the test corpus.",
            file=sys.stderr,
        )
    conf = var / "mlsd.conf"
    text = conf_text(log, var)
    if not conf.exists() or f"mail_log = {log}\n" not in conf.read_text():
        conf.write_text(text)
    stop = threading.Event()
    feeder = threading.Thread(target=feed, args=(log, stop), daemon=True) if demo else None
    if feeder is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        feeder.start()
    cmd = [sys.executable, "-m", "mlsd.cli", "run", "-c", str(conf)]
    proc = subprocess.Popen(cmd)
    print(
        f"make run: mlsd pid {proc.pid}, config {conf}\n"
        f"  rows:        tail -f {var / 'mlsd.csv'}\n"
        f"  report now:  kill -USR1 {proc.pid}\n"
        f"  reload:      kill -HUP {proc.pid}   (after editing {conf})\n"
        "  stop:        Ctrl-C",
        file=sys.stderr,
        flush=True,
    )
    # Ctrl-C reaches mlsd directly (same process group): wait for it to finish cleanly.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    code = proc.wait()
    stop.set()
    if feeder is not None:
        feeder.join(timeout=2)
    return code


if __name__ == "__main__":
    time.tzset()
    sys.exit(main())
