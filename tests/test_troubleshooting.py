"""docs/troubleshooting.md cannot rot: every line of its `sh` blocks runs, in order, against
a real `mlsd run` with a real SMTP server, and the key lines are checked for what they did.

The guide's paths (/etc/mlsd/mlsd.conf, /var/log/mail.log, /var/lib/mlsd, …) are mapped onto
a temporary installation. There is no systemd as PID 1 here or in CI, so `systemctl` is a
stand-in (tests/systemctl_shim.py) doing what the unit tells systemd to do; `systemctl
status` cannot be stood in for and is reported as not run (exit 97), which this test checks
is the only thing not run.
"""

from __future__ import annotations

import csv
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import smtpkit
from tests.followkit import ENV, now_line, wait_for
from tests.systemctl_shim import NOT_RUN

REPO = Path(__file__).resolve().parent.parent
GUIDE = REPO / "docs" / "troubleshooting.md"
GEOIP = REPO / "tests" / "data" / "geoip"
SHIM = Path(__file__).resolve().parent / "systemctl_shim.py"

pytestmark = pytest.mark.skipif(
    shutil.which("postconf") is None and not os.environ.get("CI"),
    reason="needs Postfix's postconf (CI installs it; there this test never skips)",
)


def sh_blocks(text: str) -> list[list[str]]:
    """The command lines of each ```sh block, comments and blank lines left out."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", text, re.S | re.M)
    return [
        [ln for ln in b.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        for b in blocks
    ]


@dataclass
class Ran:
    line: str
    rc: int
    out: str


@dataclass
class Site:
    root: Path
    conf: Path
    log: Path
    csv: Path
    state: Path
    mapping: dict[str, str]
    bindir: Path
    sink: smtpkit.Sink

    def daemon_log(self) -> str:
        """What the daemon started by the systemctl stand-in has logged."""
        return (self.root / "mlsd-run.err").read_text(errors="replace")

    def users(self) -> Counter[str]:
        with open(self.csv, newline="", encoding="utf-8") as fh:
            return Counter(r["user"] for r in csv.DictReader(fh, delimiter=";"))

    def run_block(self, lines: list[str]) -> list[Ran]:
        script = [
            "set -u",
            f"export PATH={self.bindir}:{Path(sys.executable).parent}:$PATH",
            f"export MAIL_CONFIG={self.root / 'postfix'}",
            'sudo() { "$@"; }',
            # The guide's mlsd commands read /etc/mlsd/mlsd.conf; here: the test's config.
            'mlsd() { case " $* " in *" -c "*) command mlsd "$@";; '
            f'*) command mlsd "$@" -c {self.conf};; esac; }}',
        ]
        mapped = []
        for i, original in enumerate(lines):
            line = original
            for real, here in self.mapping.items():
                line = line.replace(real, here)
            mapped.append(line)
            script += [f"echo '@@cmd {i}'", line, f'echo "@@rc {i} $?"']
        leader, follower = pty.openpty()
        try:
            # A terminal on stdin answers reset/purge's question: what an admin would type.
            os.write(leader, b"y\n" * 4)
            res = subprocess.run(
                ["bash", "-c", "\n".join(script)],
                stdin=follower,
                capture_output=True,
                text=True,
                timeout=300,
                env={**ENV, "MLSD_SHIM_CONF": str(self.conf), "MLSD_SHIM_DIR": str(self.root)},
                check=False,
            )
        finally:
            os.close(leader)
            os.close(follower)
        out = res.stdout + res.stderr
        ran = []
        for i, line in enumerate(mapped):
            m = re.search(rf"@@rc {i} (\d+)", res.stdout)
            assert m, f"never finished: {line}\n{out}"
            part = res.stdout.split(f"@@cmd {i}\n", 1)[1].split(f"@@rc {i} ", 1)[0]
            ran.append(Ran(lines[i], int(m[1]), part))
        # stderr is not split per command: a traceback anywhere fails the whole block.
        assert "Traceback" not in res.stderr and "internal error" not in res.stderr, out
        assert "command not found" not in res.stderr and "usage: mlsd" not in res.stderr, out
        return ran


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    root = tmp_path
    log = root / "log" / "mail.log"
    log.parent.mkdir()
    out = root / "out"
    state = root / "state"
    conf = root / "mlsd.conf"
    conf.write_text(
        f"[paths]\nmail_log = {log}\ncsv = {out / 'mlsd.csv'}\nstate_dir = {state}\n"
        "[source]\ntimezone = UTC\n"
        f"[geoip]\ncountry_db = {GEOIP / 'GeoLite2-Country-Test.mmdb'}\n"
        f"asn_db = {GEOIP / 'GeoLite2-ASN-Test.mmdb'}\n"
        "[report]\ntimezone = UTC\nto = admin@example.org\n"
        f"[smtp]\nhost = 127.0.0.1\nport = {server.port}\ntimeout = 10\n"
        "[log]\nlevel = DEBUG\n"
    )
    (root / "postfix").mkdir()
    (root / "postfix" / "main.cf").write_text("maillog_file = /var/log/mail.log\n")
    log.write_bytes(
        b"".join(now_line(f"user{i}", f"81.2.69.{140 + i}") for i in range(4))
        + b"Nov 25 04:38:12 mx postfix/smtpd[2]: 4F1: client=unknown[127.0.0.11], "
        b"sasl_method=LOGIN, sasl_username=carol\n"
    )
    bindir = root / "bin"
    bindir.mkdir()
    (bindir / "systemctl").write_text(f'#!/bin/sh\nexec {sys.executable} {SHIM} "$@"\n')
    (bindir / "systemctl").chmod(0o755)
    mapping = {
        "/etc/mlsd/mlsd.conf": str(conf),
        "/etc/systemd/system/mlsd.service": str(REPO / "contrib/systemd/mlsd.service"),
        "/etc/maillogsentinel.conf": str(REPO / "tests/data/maillogsentinel.conf"),
        "/var/log/mail.log": str(log),
        "/var/log/mlsd": str(out),
        "/var/lib/mlsd": str(state),
        "/var/lib/GeoIP": str(GEOIP),
        "/var/backups/mlsd": str(root / "backups"),
        "/tmp/mlsd.conf": str(root / "migrated.conf"),
        "~/mlsd-bug": str(root / "bug"),
        "~/.config/mlsd": str(root / "config-mlsd"),
    }
    s = Site(root, conf, log, out / "mlsd.csv", state, mapping, bindir, sink)
    yield s
    pidfile = root / "mlsd.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    server.stop()


def test_every_command_of_the_guide_runs(site: Site) -> None:
    blocks = sh_blocks(GUIDE.read_text())
    assert len(blocks) >= 10, "the guide lost its commands"

    # The daemon, started the way the guide's systemctl stand-in starts it.
    start = subprocess.run(
        [sys.executable, str(SHIM), "start", "mlsd"],
        env={**ENV, "MLSD_SHIM_CONF": str(site.conf), "MLSD_SHIM_DIR": str(site.root)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert start.returncode == 0, start.stderr
    attackers = Counter(f"user{i}" for i in range(4))
    wait_for(lambda: site.csv.exists() and site.users() == attackers)
    # No daily report at start: a fresh install never watched yesterday (mlsd.sender).

    ran: list[Ran] = []
    for block in blocks:
        ran += site.run_block(block)
        if any("kill -s USR1" in line for line in block):
            # The report is built in a child: let it be queued before the guide's next
            # commands restart the daemon (a restart abandons a build under way).
            wait_for(lambda: "report queued day=" in site.daemon_log(), 90)
        if any("reset" in r.line for r in ran[-len(block) :]):
            # After `reset`: the daemon started again re-reads the live log, exactly once.
            wait_for(lambda: site.csv.exists() and site.users() == attackers)

    bad = [r for r in ran if r.rc not in (0, 1, NOT_RUN)]
    assert not bad, "\n".join(f"{r.line}: exit {r.rc}\n{r.out}" for r in bad)
    not_run = [r.line for r in ran if r.rc == NOT_RUN]
    assert not_run == ["systemctl status mlsd --no-pager"]

    def one(prefix: str) -> Ran:
        return next(r for r in ran if r.line.startswith(prefix))

    first = one("sudo mlsd status")
    assert first.rc == 0 and "mlsd: healthy" in first.out, first.out
    assert "last report   none yet" in first.out, first.out
    assert '"healthy": true' in one("sudo mlsd status --json").out
    assert one("sudo mlsd check-config").rc == 0
    assert one("mlsd check-config -c /tmp/mlsd.conf").rc == 0
    assert "SupplementaryGroups=adm" in one("grep -E '^(DynamicUser").out
    # "mlsd cannot read the log": check-config (as root) judged the log for the unit's user.
    # Here the log is 0644, so the only refusal there can be is a directory on the way
    # (pytest's temporary directories are root's 0700), and the sentence says so.
    judged = one("sudo mlsd check-config 2>&1").out.strip().splitlines()
    assert judged[-1].endswith("configuration is valid"), judged
    for warning in judged[:-1]:
        assert "[paths] mail_log" in warning and "may not enter the directory" in warning, judged
    assert one("postconf maillog_file").out.strip() == "maillog_file = /var/log/mail.log"
    # The direct send and SIGUSR1's report both reached the SMTP server.
    assert one("sudo mlsd report --send").rc == 0
    wait_for(lambda: len(site.sink.messages) >= 2, timeout=90)  # a report built in a child
    assert "GB" in one("mlsd lookup 81.2.69.142").out
    explain = one("sudo mlsd parse --explain").out
    assert "recorded ip=81.2.69.140" in explain and "skipped (successful login)" in explain
    assert one("sudo mlsd parse /var/log/mail.log").out.count("user") >= 4
    assert one("grep -c 'authentication failed'").out.strip() == "4"
    # reset and purge archived, the daemon came back healthy in between.
    resets = list(site.state.glob("archive-*"))
    assert len(resets) == 1 and (resets[0] / "mlsd.csv").exists()
    (purged,) = (site.root / "backups").glob("archive-*")
    # No report.json: nothing was queued as a daily report yet (a fresh install).
    assert {"mlsd.csv", "checkpoint.json", "outbox", "coverage.json"} <= {
        p.name for p in purged.iterdir()
    }
    statuses = [r for r in ran if r.line == "sudo mlsd status"]
    assert statuses[-1].rc == 0, statuses[-1].out
    # "Reporting a bug": an excerpt without the attackers' IPs, and check-config's output.
    excerpt = (site.root / "bug" / "mail-excerpt.log").read_text(encoding="latin-1")
    assert excerpt and "81.2.69.140" not in excerpt
    assert "[geoip]" in (site.root / "bug" / "check-config.txt").read_text()
