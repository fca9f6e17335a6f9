"""A real Postfix + Dovecot on loopback, built and torn down in a temporary directory.

Nothing here touches the system's mail set-up: Postfix runs from its own
config_directory (`postfix -c ROOT/etc`) with its own queue and data directories and no
chroot, Dovecot from its own `dovecot.conf` with its own base_dir and state_dir. Only
the daemons started here are stopped, by their pids.

Two logging variants:

- ``postlogd``: Postfix writes `maillog_file` through postlogd's `postlog` service;
  Dovecot's `log_path` is the same file (both append), so one file holds everything.
- ``rsyslog``: Postfix and Dovecot log through syslog(3) to /dev/log, served by an
  `rsyslogd -n` we start, which writes `mail.*` with RFC 3339 timestamps
  (`RSYSLOG_FileFormat`) into the file. /dev/log is system-wide: this variant refuses
  to run when one exists that we did not create.
- ``journal`` (tests/e2e/test_e2e_journal.py only): as ``rsyslog``, but /dev/log is served
  by a stand-in for journald (tests/e2e/devlog_journal.py) that writes each message as a
  journal entry into a real journal file, through systemd-journal-remote.

Listening (127.0.0.1, and ::1 when IPv6 loopback works): 25 (SMTP, AUTH offered without
TLS, STARTTLS possible), 587 (submission, STARTTLS required before AUTH), 465
(submissions, implicit TLS), 143 (Dovecot IMAP, plaintext login allowed). SASL goes to
Dovecot (passwd-file). Dovecot's per-IP auth penalty is disabled and
`auth_failure_delay = 0`, so that every attempt gets a 535/NO at once and the tests are
deterministic (with the penalty, Postfix answers 454 and logs "Connection lost to
authentication server" instead — production behaviour, but not what is tested here).

Mail to `REPORT_RCPT` (and to `ALERT_RCPT`) is delivered by Postfix's virtual(8) agent
into a Maildir under the root, so a report (an alert) sent by mlsd through this Postfix
can be read back.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

DOMAIN: Final = "e2e.example"
MYHOSTNAME: Final = f"mail.{DOMAIN}"
SINK_DOMAIN: Final = f"sink.{DOMAIN}"  # RCPT accepted after AUTH, then discarded
REPORT_DOMAIN: Final = f"reports.{DOMAIN}"
REPORT_RCPT: Final = f"admin@{REPORT_DOMAIN}"
ALERT_RCPT: Final = f"alerts@{REPORT_DOMAIN}"  # the sentinel's alerts, a mailbox of their own

SMTP_PORTS: Final = (25, 587, 465)
IMAP_PORT: Final = 143
ALL_PORTS: Final = (*SMTP_PORTS, IMAP_PORT)
# The `service` column mlsd derives from the program name (postfix/<service>/smtpd).
SERVICE_BY_PORT: Final = {25: "smtp", 587: "submission", 465: "submissions", 143: "imap"}

# Known accounts (passwd-file). Lower case: Dovecot lower-cases usernames (%Lu), and the
# test compares the user column with what the client sent.
USERS: Final = {
    "alice@e2e.example": "Alice-Secret-1",
    "bob@e2e.example": "Bob-Secret-2",
    "carol": "Carol-Secret-3",
}
VARIANTS: Final = ("postlogd", "rsyslog")
JOURNAL: Final = "journal"
"""The journal variant: its own module and scenario (no log files to rotate)."""
JOURNAL_REMOTE: Final = "/lib/systemd/systemd-journal-remote"

BINARIES: Final = {
    "postfix": "/usr/sbin/postfix",
    "postconf": "/usr/sbin/postconf",
    "dovecot": "/usr/sbin/dovecot",
    "doveadm": "/usr/bin/doveadm",
    "doveconf": "/usr/bin/doveconf",
    "logrotate": "/usr/sbin/logrotate",
    "openssl": "/usr/bin/openssl",
    "rsyslogd": "/usr/sbin/rsyslogd",
}
POSTFIX_DAEMONS: Final = Path("/usr/lib/postfix/sbin")
DOVECOT_IMAP_LOGIN: Final = Path("/usr/lib/dovecot/imap-login")
ACCOUNTS: Final = ("postfix", "dovecot", "dovenull", "nobody")


class HarnessError(RuntimeError):
    """The mail server could not be set up (a clear sentence, with the log tail)."""


# ------------------------------------------------------------------ preconditions --


def missing_requirements(variant: str) -> str | None:
    """Why this machine cannot run the suite (root, packages), or None when it can."""
    if os.geteuid() != 0:
        return "the e2e suite needs root (it starts Postfix and Dovecot on ports 25/587/465)"
    names = [n for n in BINARIES if n != "rsyslogd" or variant == "rsyslog"]
    gone = [BINARIES[n] for n in names if not os.access(BINARIES[n], os.X_OK)]
    if variant == JOURNAL and not os.access(JOURNAL_REMOTE, os.X_OK):
        gone.append(f"{JOURNAL_REMOTE} (package systemd-journal-remote)")
    if not (POSTFIX_DAEMONS / "postlogd").exists():
        gone.append(str(POSTFIX_DAEMONS / "postlogd"))
    if not DOVECOT_IMAP_LOGIN.exists():
        gone.append(f"{DOVECOT_IMAP_LOGIN} (package dovecot-imapd)")
    for account in ACCOUNTS:
        try:
            pwd.getpwnam(account)
        except KeyError:
            gone.append(f"user {account}")
    if gone:
        return (
            "missing for the e2e suite: " + ", ".join(gone) + " — install with: "
            "apt-get install postfix dovecot-core dovecot-imapd logrotate rsyslog openssl"
        )
    return None


def ipv6_loopback() -> bool:
    """Whether ::1 can be bound (containers without IPv6 cannot)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def busy_ports(ports: tuple[int, ...], v6: bool) -> list[str]:
    """The `addr:port` among ours that something else already listens on."""
    busy = []
    for port in ports:
        for family, addr in [(socket.AF_INET, "127.0.0.1")] + (
            [(socket.AF_INET6, "::1")] if v6 else []
        ):
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((addr, port))
                except OSError:
                    busy.append(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
    return busy


# ------------------------------------------------------------------------- helpers --


def run(cmd: list[str], *, timeout: float = 60, env: dict[str, str] | None = None) -> str:
    """Run a command; raise HarnessError with its output when it fails."""
    try:
        p = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{' '.join(cmd)}: no answer within {timeout} s") from e
    if p.returncode != 0:
        raise HarnessError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}{p.stderr}".rstrip())
    return p.stdout


def wait_for(what: str, cond: Callable[[], bool], timeout: float, every: float = 0.05) -> None:
    """Poll `cond` until true; HarnessError naming `what` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise HarnessError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != b"Z"


def children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


def read_pidfile(path: Path) -> int | None:
    """The pid in a pid file (Postfix pads it with spaces), or None."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def stop_pid(pid: int, name: str, *, grace: float = 10.0) -> None:
    """SIGTERM `pid` (and SIGKILL it and its direct children if it does not go)."""
    if not alive(pid):
        return
    kids = children(pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        for p in [pid, *kids]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        wait_for(f"{name} (pid {pid}) to die", lambda: not alive(pid), 5)


def failure_lines(logdir: Path, name: str) -> int:
    """Failed attempts written so far to `name` and its rotated copies (gz included).

    Counts Postfix `SASL … authentication failed` lines (one attempt each, `Connection
    lost` included so that a lost or surplus line shows) and Dovecot `*-login` lines with
    `(auth failed, N attempts` (N each). Used as a barrier before a rotation that would
    otherwise lose lines (copytruncate) — never as the expectation, which comes from the
    client.
    """
    total = 0
    try:
        raw = log_bytes(logdir, name)
    except (OSError, EOFError):  # replaced or half-written by a rotation: retry
        return -1
    for line in raw.splitlines():
        if b"smtpd[" in line and b"SASL" in line and b"authentication failed" in line:
            total += 1
        elif b"-login: " in line and b"(auth failed, " in line:
            n = line.split(b"(auth failed, ", 1)[1].split(b" ", 1)[0]
            total += int(n) if n.isdigit() else 1
    return total


def log_bytes(logdir: Path, name: str) -> bytes:
    """`name` and all its rotated copies in `logdir`, gzip or not, concatenated."""
    out = []
    for path in sorted(logdir.glob(name + "*")):
        raw = path.read_bytes()
        out.append(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    return b"".join(out)


def insecure_context() -> ssl.SSLContext:
    """TLS context for the self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --------------------------------------------------------------------- the server --


class MailServer:
    """Postfix + Dovecot (+ rsyslogd) under `root`; `start()`, `stop()`, rotation helpers."""

    def __init__(self, root: Path, variant: str = "postlogd") -> None:
        if variant not in (*VARIANTS, JOURNAL):
            raise ValueError(variant)
        self.root = root
        self.variant = variant
        self.v6 = ipv6_loopback()
        self.etc = root / "etc"  # Postfix config_directory
        self.spool = root / "spool"  # queue_directory
        self.data = root / "data"  # data_directory (master.lock, TLS caches)
        self.tls = root / "tls"
        self.dovecot_dir = root / "dovecot"
        self.dovecot_conf = self.dovecot_dir / "dovecot.conf"
        self.dovecot_base = self.dovecot_dir / "run"
        self.imapmail = root / "imapmail"
        self.vmail = root / "vmail"
        self.logdir = root / "log"
        self.maillog = self.logdir / "mail.log"
        self.journal_dir = root / "journal"
        if variant == JOURNAL:
            # What there is to wait for and to show: the journal file.
            self.maillog = self.journal_dir / "mail.journal"
        self.rsyslog_dir = root / "rsyslog"
        self.rotate_dir = root / "logrotate"
        self.started: dict[str, int] = {}  # daemon → pid, for what we started only
        self._rsyslogd: subprocess.Popen[bytes] | None = None
        self._devlog_ours = False

    # ---- paths and small commands

    @property
    def mailbox(self) -> Path:
        """Maildir receiving REPORT_RCPT."""
        return self.vmail / "admin"

    @property
    def alert_mailbox(self) -> Path:
        """Maildir receiving ALERT_RCPT."""
        return self.vmail / "alerts"

    def postfix(self, *args: str, timeout: float = 60) -> str:
        """`postfix -c OUR_ETC ARGS…`."""
        return run([BINARIES["postfix"], "-c", str(self.etc), *args], timeout=timeout)

    def doveadm(self, *args: str, timeout: float = 30) -> str:
        """`doveadm -c OUR_CONF ARGS…`."""
        return run([BINARIES["doveadm"], "-c", str(self.dovecot_conf), *args], timeout=timeout)

    def listen_addrs(self) -> list[str]:
        return ["127.0.0.1", "::1"] if self.v6 else ["127.0.0.1"]

    def tail(self, n: int = 60) -> str:
        """The end of the mail log and of the daemons' start-up output, for error messages."""
        out = []
        for p in [self.maillog, self.logdir / "daemons.out"]:
            with contextlib.suppress(OSError):
                lines = p.read_text(errors="replace").splitlines()[-n:]
                out.append(f"--- {p} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(out)

    # ---- set-up

    def start(self) -> None:
        """Write every configuration, start the daemons, check that they answer."""
        busy = busy_ports(ALL_PORTS, self.v6)
        if busy:
            raise HarnessError(
                "cannot start the e2e mail server: already in use on this machine: "
                + ", ".join(busy)
                + " (stop the system's Postfix/Dovecot, or run the suite elsewhere)"
            )
        if self.variant in ("rsyslog", JOURNAL) and os.path.lexists("/dev/log"):
            raise HarnessError(
                f"the {self.variant} variant needs /dev/log, which already exists (a system syslog "
                "daemon or journald owns it); refusing to replace it"
            )
        for d in (self.etc, self.spool, self.data, self.tls, self.dovecot_dir, self.logdir):
            d.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        shutil.chown(self.data, "postfix", "postfix")
        for d in (self.imapmail, self.vmail):
            d.mkdir(exist_ok=True)
            shutil.chown(d, "nobody", "nogroup")
        self._write_cert()
        self._write_dovecot()
        self._write_postfix()
        out = open(self.logdir / "daemons.out", "ab")  # shared by the daemons
        try:
            if self.variant == "rsyslog":
                self._start_rsyslog(out)
            elif self.variant == JOURNAL:
                self._start_journal(out)
            self._start_dovecot(out)
            self._start_postfix()
            self._self_check()
        except BaseException:
            self.stop()
            raise
        finally:
            out.close()

    def _write_cert(self) -> None:
        run(
            [
                BINARIES["openssl"],
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                f"/CN={MYHOSTNAME}",
                "-addext",
                f"subjectAltName=DNS:{MYHOSTNAME},IP:127.0.0.1",
                "-keyout",
                str(self.tls / "key.pem"),
                "-out",
                str(self.tls / "cert.pem"),
            ]
        )
        (self.tls / "key.pem").chmod(0o600)

    def _write_dovecot(self) -> None:
        users = self.dovecot_dir / "users"
        users.write_text(
            "".join(
                f"{u}:{{PLAIN}}{pw}:65534:65534::{self.imapmail / u}::\n" for u, pw in USERS.items()
            )
        )
        shutil.chown(users, "root", "dovecot")
        users.chmod(0o640)
        (self.dovecot_dir / "state").mkdir(exist_ok=True)
        if self.variant == "postlogd":
            # Dovecot appends to the file postlogd writes: one log holds both.
            logging = f"log_path = {self.maillog}\ninfo_log_path = {self.maillog}\n"
        else:
            logging = "log_path = syslog\nsyslog_facility = mail\n"
        listen = ", ".join(self.listen_addrs())
        self.dovecot_conf.write_text(
            f"""# mlsd e2e: IMAP on loopback and SASL for Postfix.
protocols = imap
listen = {listen}
base_dir = {self.dovecot_base}
state_dir = {self.dovecot_dir / "state"}
ssl = no
disable_plaintext_auth = no
{logging}log_timestamp = "%b %d %H:%M:%S "
# Without auth_verbose Dovecot's auth process logs nothing per failure; with it, it
# repeats every attempt ("passwd-file(user,ip): Password mismatch"), which mlsd must
# not count a second time.
auth_verbose = yes
auth_verbose_passwords = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{self.imapmail}/%u
first_valid_uid = 65534
passdb {{
  driver = passwd-file
  args = username_format=%u {self.dovecot_dir / "users"}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.dovecot_dir / "users"}
}}
service imap-login {{
  inet_listener imap {{
    port = {IMAP_PORT}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service auth {{
  unix_listener {self.spool / "private" / "auth"} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
# No per-IP auth penalty: without this listener the auth process cannot reach anvil's
# penalty table (otherwise repeated failures get 454 after ~10 s instead of 535).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
        )
        run([BINARIES["doveconf"], "-c", str(self.dovecot_conf), "-n"])

    def _write_postfix(self) -> None:
        inet = ", ".join("[::1]" if a == "::1" else a for a in self.listen_addrs())
        if self.variant == "postlogd":
            logging = f"maillog_file = {self.maillog}\nmaillog_file_prefixes = {self.logdir}\n"
        else:
            logging = "maillog_file =\nsyslog_facility = mail\n"
        (self.etc / "main.cf").write_text(
            f"""# mlsd e2e: a loopback-only Postfix with its own directories.
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {self.data}
myhostname = {MYHOSTNAME}
mydomain = {DOMAIN}
myorigin = $mydomain
mydestination =
inet_interfaces = {inet}
inet_protocols = {"ipv4, ipv6" if self.v6 else "ipv4"}
mynetworks = 127.0.0.1/32{" [::1]/128" if self.v6 else ""}
relayhost =
alias_maps =
alias_database =
biff = no
smtpd_banner = $myhostname ESMTP
# no DNS at all: clients are logged as unknown[IP]
smtpd_peername_lookup = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
# never deliver anywhere but the two test domains
default_transport = error:e2e: outbound mail disabled
relay_transport = error:e2e: outbound mail disabled
relay_domains = {SINK_DOMAIN}
transport_maps = inline:{{{SINK_DOMAIN}=discard:e2e-sink}}
virtual_mailbox_domains = {REPORT_DOMAIN}
virtual_mailbox_base = {self.vmail}
virtual_mailbox_maps = inline:{{{REPORT_RCPT}=admin/, {ALERT_RCPT}=alerts/}}
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100

{logging}
smtpd_tls_cert_file = {self.tls / "cert.pem"}
smtpd_tls_key_file = {self.tls / "key.pem"}
smtpd_tls_security_level = may
smtp_tls_security_level = none

smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = private/auth
smtpd_sasl_security_options = noanonymous
smtpd_tls_auth_only = no
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
"""
        )
        sub = (
            "\n  -o smtpd_sasl_auth_enable=yes\n  -o smtpd_client_restrictions="
            "\n  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject"
        )
        # No chroot (column 5 = n): the queue directory is not a prepared chroot.
        (self.etc / "master.cf").write_text(
            f"""# service type private unpriv chroot wakeup maxproc command
25         inet  n       -       n       -       -       smtpd
587        inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes{sub}
465        inet  n       -       n       -       -       smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes{sub}
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
local      unix  -       n       n       -       -       local
virtual    unix  -       n       n       -       -       virtual
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
"""
        )
        run([BINARIES["postfix"], "-c", str(self.etc), "check"])

    # ---- daemons

    def _start_rsyslog(self, out: IO[bytes]) -> None:
        work = self.rsyslog_dir / "work"
        work.mkdir(parents=True, exist_ok=True)
        conf = self.rsyslog_dir / "rsyslog.conf"
        conf.write_text(
            f"""# mlsd e2e: mail.* from /dev/log into one file, RFC 3339 timestamps.
global(workDirectory="{work}")
module(load="imuxsock" SysSock.Name="/dev/log" SysSock.Unlink="on")
mail.*  action(type="omfile" file="{self.maillog}" template="RSYSLOG_FileFormat")
"""
        )
        run([BINARIES["rsyslogd"], "-N1", "-f", str(conf)])
        self._rsyslogd = subprocess.Popen(
            [BINARIES["rsyslogd"], "-n", "-f", str(conf), "-i", str(self.rsyslog_dir / "pid")],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.started["rsyslogd"] = self._rsyslogd.pid
        self._devlog_ours = True
        wait_for("rsyslogd to create /dev/log", lambda: os.path.exists("/dev/log"), 10)

    def _start_journal(self, out: IO[bytes]) -> None:
        self.journal_dir.mkdir(parents=True, exist_ok=True)
        self.journal_dir.chmod(0o755)
        self._rsyslogd = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.devlog_journal",
                "/dev/log",
                str(self.maillog),
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
        self.started["rsyslogd"] = self._rsyslogd.pid  # stopped the same way
        self._devlog_ours = True
        wait_for("the journal stand-in to create /dev/log", lambda: os.path.exists("/dev/log"), 10)

    def _start_dovecot(self, out: IO[bytes]) -> None:
        shutil.rmtree(self.dovecot_base, ignore_errors=True)  # stale sockets
        subprocess.run(
            [BINARIES["dovecot"], "-c", str(self.dovecot_conf)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=30,
        )
        pidfile = self.dovecot_base / "master.pid"
        wait_for("Dovecot's master.pid", lambda: read_pidfile(pidfile) is not None, 10)
        pid = read_pidfile(pidfile)
        assert pid is not None
        self.started["dovecot"] = pid
        auth = self.spool / "private" / "auth"
        wait_for(f"Dovecot's auth socket {auth}", auth.exists, 10)

    def _start_postfix(self) -> None:
        self.postfix("start")
        pidfile = self.spool / "pid" / "master.pid"
        wait_for("Postfix master.pid", lambda: read_pidfile(pidfile) is not None, 10)
        pid = read_pidfile(pidfile)
        assert pid is not None
        self.started["postfix"] = pid

    def _self_check(self) -> None:
        import imaplib
        import smtplib

        def listening() -> bool:
            return len(busy_ports(ALL_PORTS, self.v6)) == len(ALL_PORTS) * len(self.listen_addrs())

        try:
            wait_for("Postfix and Dovecot to listen on 25, 587, 465 and 143", listening, 15)
            ctx = insecure_context()
            with smtplib.SMTP("127.0.0.1", 587, local_hostname="check.e2e.example") as s:
                s.ehlo()
                assert not s.has_extn("auth"), "587 offers AUTH before STARTTLS"
                s.starttls(context=ctx)
                s.ehlo()
                assert {"PLAIN", "LOGIN"} <= set(s.esmtp_features["auth"].split())
            with smtplib.SMTP("127.0.0.1", 25, local_hostname="check.e2e.example") as s:
                s.ehlo()
                assert s.has_extn("auth"), "25 offers no AUTH"
            with smtplib.SMTP_SSL(
                "127.0.0.1", 465, local_hostname="check.e2e.example", context=ctx
            ) as s:
                s.ehlo()
                assert s.has_extn("auth"), "465 offers no AUTH"
            with imaplib.IMAP4("127.0.0.1", IMAP_PORT, timeout=10) as m:
                m.login("carol", USERS["carol"])
                m.logout()
            wait_for("the first log lines", self.maillog.exists, 10)
        except (AssertionError, OSError, smtplib.SMTPException, imaplib.IMAP4.error) as e:
            raise HarnessError(f"mail server self-check failed: {e!r}\n{self.tail()}") from e

    # ---- tear-down

    def stop(self) -> None:
        """Stop what we started, by pid, whatever state it is in. Never raises for a
        daemon that is already gone; raises HarnessError if one would not die."""
        errors = []
        pid = self.started.pop("postfix", None)
        if pid is not None:
            with contextlib.suppress(HarnessError):
                self.postfix("stop", timeout=30)
            try:
                # `postfix stop` signals the master, whose children go with it.
                stop_pid(pid, "Postfix master", grace=10)
            except HarnessError as e:
                errors.append(str(e))
        pid = self.started.pop("dovecot", None)
        if pid is not None:
            try:
                stop_pid(pid, "Dovecot master", grace=15)
            except HarnessError as e:
                errors.append(str(e))
        pid = self.started.pop("rsyslogd", None)
        if pid is not None:
            try:
                stop_pid(pid, "rsyslogd", grace=10)
            except HarnessError as e:
                errors.append(str(e))
            if self._rsyslogd is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._rsyslogd.wait(timeout=1)
        if self._devlog_ours:
            with contextlib.suppress(FileNotFoundError):
                os.unlink("/dev/log")  # rsyslogd unlinks it on a clean exit already
            self._devlog_ours = False
        if errors:
            raise HarnessError("; ".join(errors))

    # ---- rotation

    def _reopen_commands(self) -> str:
        if self.variant == "postlogd":
            # postlogd reopens by being replaced: a master reload (what `postfix logrotate`
            # does too). Dovecot writes the same file and has its own reopen.
            return (
                f"{BINARIES['postfix']} -c {self.etc} reload >/dev/null 2>&1\n"
                f"        {BINARIES['doveadm']} -c {self.dovecot_conf} log reopen"
            )
        return f"/bin/kill -HUP {self.started['rsyslogd']}"

    def logrotate(self, mode: str) -> None:
        """Rotate the mail log with the real logrotate: `create` (rename, new file,
        writers reopen; compress + delaycompress) or `copytruncate` (copy, truncate in
        place, writers not told). Both keep 20 generations, .1 plain, older ones .gz."""
        if mode == "create":
            reopen = self._reopen_commands()
            how = f"create 0640 root root\n    postrotate\n        {reopen}\n    endscript"
        elif mode == "copytruncate":
            how = "copytruncate"
        else:
            raise ValueError(mode)
        self.rotate_dir.mkdir(exist_ok=True)
        conf = self.rotate_dir / f"{mode}.conf"
        conf.write_text(
            f"""{self.maillog} {{
    rotate 20
    missingok
    compress
    delaycompress
    {how}
}}
"""
        )
        conf.chmod(0o644)
        run(
            [BINARIES["logrotate"], "-f", "-s", str(self.rotate_dir / "state"), str(conf)],
            timeout=60,
        )

    def postfix_logrotate(self) -> None:
        """`postfix logrotate` (Postfix ≥ 3.4 with maillog_file): mv to
        mail.log.YYYYMMDD-HHMMSS, HUP the master, sleep 1 s, gzip. It knows nothing of
        Dovecot, which shares the file: tell it to reopen once the rename is done."""
        assert self.variant == "postlogd"
        self.postfix("logrotate")
        self.doveadm("log", "reopen")


def logged_failures(server: MailServer) -> int:
    """See failure_lines."""
    if server.variant == JOURNAL:
        return journal_failures(server)
    return failure_lines(server.logdir, server.maillog.name)


def journal_failures(server: MailServer) -> int:
    """failure_lines, counted in the journal's syslog-like form (`journalctl -o short`)."""
    out = server.logdir / "journal.txt"
    server.logdir.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as fh:
        done = subprocess.run(
            ["journalctl", f"--directory={server.journal_dir}", "-o", "short", "--no-pager"],
            stdout=fh,
            stderr=subprocess.DEVNULL,
            check=False,
            timeout=60,
        )
    return -1 if done.returncode else failure_lines(server.logdir, out.name)
