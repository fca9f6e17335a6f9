"""The attacker: stdlib smtplib and imaplib against the e2e mail server, from many sources.

A seeded plan of sessions (SMTP on 25/587/465 with AUTH PLAIN and LOGIN, IMAP LOGIN),
run by a few worker threads until told to stop; every attempt's outcome is recorded
from the server's reply, which is the ground truth the CSV is compared with:

- a failed attempt is one that got `535` (SMTP) or `NO` (IMAP LOGIN);
- a successful one got `235` / `OK` and must never become a row;
- anything else (454 from a penalised Dovecot, a refused connection, …) is recorded as
  an error, which fails the test: then the expectation would not be known.

IMAP sessions never mix a failure and a success: Dovecot logs one line per connection,
`(auth failed, N attempts …)` when it ends unauthenticated and `Login:` otherwise, so a
failure followed by a success on one connection is not in the log at all.
"""

from __future__ import annotations

import contextlib
import imaplib
import random
import smtplib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.e2e.mailserver import IMAP_PORT, SERVICE_BY_PORT, SINK_DOMAIN, USERS, insecure_context

# Wrong passwords for real accounts, and accounts that do not exist; with and without a
# domain.
FAIL_USERS = (
    "alice@e2e.example",
    "carol",
    "admin",
    "info@e2e.example",
    "test@other.example",
    "root",
)
HELO = "attacker.e2e.example"  # explicit, so smtplib never calls getfqdn() (DNS)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One password tried."""

    port: int
    source: str
    user: str
    password: str
    mech: str  # PLAIN or LOGIN (IMAP: LOGIN command)
    initial_response: bool = True

    @property
    def service(self) -> str:
        return SERVICE_BY_PORT[self.port]

    @property
    def good(self) -> bool:
        return USERS.get(self.user) == self.password


@dataclass(frozen=True, slots=True)
class Session:
    """One connection and the attempts made on it, in order."""

    port: int
    source: str
    attempts: tuple[Attempt, ...]
    send: bool = False
    """SMTP: after a success, send a message (to the sink) through the account."""


@dataclass(slots=True)
class Outcome:
    attempt: Attempt
    failed: bool
    reply: str
    at: float


class _IMAP(imaplib.IMAP4):
    """IMAP4 bound to a chosen source address (imaplib has no source_address)."""

    def __init__(self, host: str, port: int, source: str, timeout: float) -> None:
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection(
            (self.host, self.port), timeout, source_address=(self._source, 0)
        )


def sources(v6: bool, n: int = 40) -> list[str]:
    """Client addresses: many in 127.0.0.0/8 (bindable without set-up), and ::1."""
    out = [f"127.0.0.{i}" for i in range(2, 2 + n)] + ["127.1.2.3", "127.254.0.9"]
    return [*out, "::1"] if v6 else out


def plan(seed: int, v6: bool) -> Iterator[Session]:
    """An endless, seeded mix of sessions that covers every combination early on."""
    rng = random.Random(seed)
    srcs = sources(v6)
    # The first rounds walk every (port, mechanism, user) and the IPv6 source
    # deterministically; after that, random.
    combos = [
        (port, mech, user)
        for port in (25, 587, 465)
        for mech in ("PLAIN", "LOGIN")
        for user in FAIL_USERS
    ]
    i = 0
    while True:
        kind = i % 10
        src = srcs[i % len(srcs)] if i < 2 * len(srcs) else rng.choice(srcs)
        if v6 and i % 17 == 5:
            src = "::1"
        if kind in (3, 8):  # IMAP: one failed LOGIN (or two, same user), or one success
            if rng.random() < 0.15:
                user = rng.choice(list(USERS))
                yield Session(
                    IMAP_PORT, src, (Attempt(IMAP_PORT, src, user, USERS[user], "LOGIN"),)
                )
            else:
                user = rng.choice(FAIL_USERS)
                n = 2 if rng.random() < 0.2 else 1
                att = Attempt(IMAP_PORT, src, user, f"wrong-{i}", "LOGIN")
                yield Session(IMAP_PORT, src, (att,) * n)
        else:
            atts: list[tuple[int, str, str]] = []
            for _ in range(rng.choice((1, 1, 2, 3))):
                if i < len(combos) * 2:
                    port, mech, user = combos[(i + len(atts)) % len(combos)]
                else:
                    port = rng.choice((25, 587, 465))
                    mech = rng.choice(("PLAIN", "LOGIN"))
                    user = rng.choice(FAIL_USERS)
                atts.append((port, mech, user))
            port = atts[0][0]
            attempts = [
                Attempt(port, src, user, f"wrong-{i}", mech, rng.random() < 0.7)
                for _, mech, user in atts
            ]
            if rng.random() < 0.2:  # then the right password: a success, never a row
                user = rng.choice(list(USERS))
                attempts.append(
                    Attempt(port, src, user, USERS[user], rng.choice(("PLAIN", "LOGIN")))
                )
            yield Session(port, src, tuple(attempts))
        i += 1


def run_session(s: Session, timeout: float = 20) -> list[Outcome]:
    """Connect, try every attempt, record each reply."""
    host = "::1" if ":" in s.source else "127.0.0.1"
    if s.port == IMAP_PORT:
        return _imap_session(s, host, timeout)
    return _smtp_session(s, host, timeout)


def _smtp_session(s: Session, host: str, timeout: float) -> list[Outcome]:
    out: list[Outcome] = []
    src = (s.source, 0)
    if s.port == 465:
        smtp: smtplib.SMTP = smtplib.SMTP_SSL(
            host,
            465,
            local_hostname=HELO,
            timeout=timeout,
            source_address=src,
            context=insecure_context(),
        )
    else:
        smtp = smtplib.SMTP(host, s.port, local_hostname=HELO, timeout=timeout, source_address=src)
    with smtp:
        smtp.ehlo()
        if s.port == 587:
            smtp.starttls(context=insecure_context())
            smtp.ehlo()
        for a in s.attempts:
            smtp.user, smtp.password = a.user, a.password
            authobject = smtp.auth_plain if a.mech == "PLAIN" else smtp.auth_login
            try:
                code, _ = smtp.auth(a.mech, authobject, initial_response_ok=a.initial_response)
            except smtplib.SMTPAuthenticationError as e:
                code = e.smtp_code
            out.append(Outcome(a, code == 535, str(code), time.time()))
            if code == 235 and s.send:
                # What a spammer with a guessed password does: a real message, which
                # Postfix queues (smtpd `client=…, sasl_username=…`, qmgr `nrcpt=1`).
                sender = a.user if "@" in a.user else f"{a.user}@e2e.example"
                smtp.sendmail(sender, [f"nobody@{SINK_DOMAIN}"], _spam(sender))
                break
            if code == 235:
                # A transaction, so that Postfix logs `client=…, sasl_method=…` too.
                smtp.mail(f"someone@{SINK_DOMAIN}")
                smtp.rcpt(f"nobody@{SINK_DOMAIN}")
                smtp.rset()
                break
        smtp.quit()
    return out


def _spam(sender: str) -> bytes:
    return (
        f"From: {sender}\r\nTo: nobody@{SINK_DOMAIN}\r\nSubject: e2e breach\r\n\r\n"
        "sent with a guessed password\r\n"
    ).encode()


def _imap_session(s: Session, host: str, timeout: float) -> list[Outcome]:
    out: list[Outcome] = []
    m = _IMAP(host, IMAP_PORT, s.source, timeout)
    try:
        for a in s.attempts:
            # The stubs type login's status as always "OK" (a refusal raises); the
            # variable also holds "NO" or an error text below.
            reply: str
            try:
                reply, _ = m.login(a.user, a.password)
            except imaplib.IMAP4.error as e:
                reply = "NO" if "AUTHENTICATIONFAILED" in str(e) else f"error {e}"
            out.append(Outcome(a, reply == "NO", reply, time.time()))
            if reply == "OK":
                break
        m.logout()
    finally:
        with contextlib.suppress(OSError):
            m.shutdown()
    return out


@dataclass
class Attacker:
    """Worker threads running `plan(seed)` until stopped; pausable between sessions."""

    v6: bool
    seed: int = 7
    workers: int = 6
    outcomes: list[Outcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._plan = plan(self.seed, self.v6)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._running = threading.Event()  # set: sessions may start
        self._stop = False
        self._busy = 0
        self._threads: list[threading.Thread] = []

    # ---- counts

    def failures(self) -> int:
        with self._lock:
            return sum(o.failed for o in self.outcomes)

    def expected_rows(self) -> Counter[tuple[str, str, str]]:
        """The multiset of (ip, user, service) the CSV must hold: one per failure."""
        with self._lock:
            return Counter(
                (o.attempt.source, o.attempt.user, o.attempt.service)
                for o in self.outcomes
                if o.failed
            )

    def successes(self) -> list[Attempt]:
        with self._lock:
            return [o.attempt for o in self.outcomes if not o.failed]

    # ---- control

    def start(self) -> None:
        self._running.set()
        for n in range(self.workers):
            t = threading.Thread(target=self._work, name=f"attacker-{n}", daemon=True)
            t.start()
            self._threads.append(t)

    def pause(self, timeout: float = 60) -> None:
        """No new session starts; returns when none is in flight."""
        self._running.clear()
        with self._cond:
            if not self._cond.wait_for(lambda: self._busy == 0, timeout):
                raise TimeoutError("attack sessions still in flight")

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self.pause()
        with self._lock:
            self._stop = True
        self._running.set()
        for t in self._threads:
            t.join(timeout=30)

    def wait_failures(self, n: int, timeout: float) -> None:
        """Block until at least `n` failed attempts have been made in total."""
        deadline = time.monotonic() + timeout
        while self.failures() < n:
            if self.errors:
                raise AssertionError(f"attack errors: {self.errors[:5]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.failures()} of {n} failed attempts made")
            time.sleep(0.05)

    def _work(self) -> None:
        while True:
            self._running.wait()
            with self._lock:
                if self._stop:
                    return
                if not self._running.is_set():
                    continue
                session = next(self._plan)
                self._busy += 1
            try:
                got = run_session(session)
            except (OSError, smtplib.SMTPException, imaplib.IMAP4.error) as e:
                got = []
                with self._lock:
                    self.errors.append(f"{session}: {e!r}")
            with self._cond:
                self.outcomes.extend(got)
                for o in got:
                    if not o.failed and not o.attempt.good:
                        self.errors.append(f"unexpected reply {o.reply} to {o.attempt}")
                    if o.failed and o.attempt.good:
                        self.errors.append(f"good password refused: {o.reply} {o.attempt}")
                self._busy -= 1
                self._cond.notify_all()


class AttackError(AssertionError):
    """A reply other than the one the attempt must get (the expectation is then unknown)."""


def breach(port: int, source: str, user: str, failures: int, timeout: float = 20) -> list[Outcome]:
    """A brute force that succeeds: `failures` wrong passwords for `user` from `source`,
    one connection each (Postfix slows down a client after smtpd_soft_error_limit errors
    on one connection), then the right password on a new one. Over SMTP the account then
    sends a message; over IMAP the session logs in and out. Returns every outcome, the
    success last; AttackError unless each wrong password got 535/NO and the right one
    235/OK."""
    good = USERS[user]
    mechs = ("LOGIN",) if port == IMAP_PORT else ("PLAIN", "LOGIN")
    sessions = [
        Session(port, source, (Attempt(port, source, user, f"guess-{i}", mechs[i % len(mechs)]),))
        for i in range(failures)
    ]
    sessions.append(
        Session(port, source, (Attempt(port, source, user, good, mechs[0]),), send=True)
    )
    # The failures in parallel: Dovecot's auth process answers a failure only on its next
    # 0.5 s tick (AUTH_FAILURE_DELAY_CHECK_MSECS), even with auth_failure_delay = 0. All
    # of them are answered (so logged) before the success starts.
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda s: run_session(s, timeout), sessions[:-1]))
    results.append(run_session(sessions[-1], timeout))
    out: list[Outcome] = []
    for s, got in zip(sessions, results, strict=True):
        want_failure = not s.attempts[0].good
        if len(got) != 1 or got[0].failed != want_failure:
            raise AttackError(
                f"{s}: expected {'a refusal' if want_failure else 'a login'}, got {got}"
            )
        if not want_failure and got[0].reply not in ("235", "OK"):
            raise AttackError(f"{s}: login answered {got[0].reply}")
        out.extend(got)
    return out
