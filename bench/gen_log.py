"""Seeded, deterministic generator of a realistic Postfix/Dovecot mail.log for benchmarks.

    python bench/gen_log.py OUT --lines 1000000 --seed 42 --stamps classic|rfc3339|mixed

About 97 % of the lines are ordinary traffic (SMTP sessions, deliveries, rejects, SASL
logins, IMAP logins) and about 3 % are authentication failures in the shapes real servers
write. The output depends only on (lines, seed, stamps): one `random.Random(seed)` drives
everything and nothing iterates over a set or reads the clock, so the same arguments give
the same bytes on every machine and Python version that keeps `random`'s documented
reproducibility guarantee.

`generate()` returns the counts a consumer can check its own results against: total lines,
failure lines by kind, and how many of them a correct parser must report as failures.
"""

from __future__ import annotations

import argparse
import base64
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["FAILURE_KINDS", "GENERATOR_VERSION", "STAMP_STYLES", "generate", "main"]

# Bump whenever the output for a given (lines, seed, stamps) changes: bench/run.py keys
# its cache of generated logs on it.
GENERATOR_VERSION = 1

STAMP_STYLES = ("classic", "rfc3339", "mixed")

# Failure kinds, in the order the counts report them. Every kind except `server_error`
# is an attack a parser must record; `server_error` is the SASL backend being down.
FAILURE_KINDS = (
    "smtpd_login_nouser",
    "submission_plain_user",
    "smtps_login_port_user",
    "server_error",
    "dovecot_imap",
    "dovecot_pop3",
)
NOT_ATTACKS = frozenset({"server_error"})

START = datetime(2026, 11, 24, tzinfo=UTC)
# "A few lines per second": exponential gaps with this mean, in microseconds.
MEAN_GAP_US = 250_000
HOST = "mail"
DOMAIN = "example.org"
SERVER_IP = "192.0.2.1"
# Sessions overlap in a real log; this many are open at once and their lines interleave.
CONCURRENT = 3
# Lines are joined and written in chunks this large: one write() per chunk, not per line.
CHUNK_LINES = 20_000
WRITE_BUFFER = 1 << 20

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# One pending log line: (program[pid], message, failure kind or None).
Line = tuple[str, str, str | None]
Episode = list[Line]


def _unique(rng: random.Random, n: int, make: Callable[[], str]) -> list[str]:
    # A list for order (determinism), a set only for membership.
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        item = make()
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out


def _ipv4(rng: random.Random) -> str:
    # Skip 0/8, 10/8, 127/8 and multicast and above: attackers and peers are public hosts.
    first = rng.choice([n for n in range(1, 224) if n not in (10, 127)])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def _ipv6(rng: random.Random) -> str:
    # 2001:db8::/32 is the documentation prefix; the low groups vary, some zero runs
    # compress to `::` as servers log them.
    groups = [rng.randrange(0x10000) for _ in range(6)]
    if rng.random() < 0.5:
        return f"2001:db8:{groups[0]:x}::{groups[5]:x}"
    return "2001:db8:" + ":".join(f"{g:x}" for g in groups)


def _usernames() -> list[str]:
    # What dictionary attacks actually try: role accounts, first names, numbered users,
    # bare and with the domain. Exactly 200, fixed, so the list needs no randomness.
    bases = [
        "admin", "info", "test", "user", "webmaster", "postmaster", "support", "sales",
        "contact", "office", "mail", "root", "guest", "noreply", "marketing", "billing",
        "hr", "jobs", "abuse", "security", "alice", "bob", "carol", "dave", "eve",
    ]  # fmt: skip
    names: list[str] = []
    for base in bases:
        names += [base, f"{base}@{DOMAIN}"]
    i = 1
    while len(names) < 200:
        names.append(f"user{i}" if i % 2 else f"user{i}@{DOMAIN}")
        i += 1
    return names


class _World:
    """Everything drawn once per log: address pools, names, process ids."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.attackers = _unique(
            rng, 2000, lambda: _ipv6(rng) if rng.random() < 0.12 else _ipv4(rng)
        )
        self.attacker_names = _unique(
            rng,
            60,
            lambda: (
                f"{rng.choice(['vps', 'host', 'srv', 'static'])}"
                f"{rng.randrange(1, 9999)}.{rng.choice(['example.net', 'example.com', 'test.net'])}"
            ),
        )
        self.peers = _unique(rng, 300, lambda: _ipv4(rng))
        self.peer_names = [
            f"mail-{rng.choice(['ed1', 'wm1', 'lf1', 'out'])}-f{i}.{rng.choice(_PEER_DOMAINS)}"
            for i in range(len(self.peers))
        ]
        self.users = _usernames()
        self.local_users = [f"{n}@{DOMAIN}" for n in ("alice", "bob", "carol", "dave", "eve")]
        self.senders = [
            f"{n}@{d}"
            for n in ("news", "bob", "no-reply", "billing", "friend", "list")
            for d in _PEER_DOMAINS
        ]
        self.pids = {
            prog: [rng.randrange(1000, 65000) for _ in range(n)]
            for prog, n in (
                ("postfix/smtpd", 40),
                ("postfix/submission/smtpd", 10),
                ("postfix/smtps/smtpd", 10),
                ("postfix/cleanup", 8),
                ("postfix/smtp", 12),
                ("postfix/lmtp", 6),
                ("postfix/local", 4),
            )
        }
        self.qmgr = f"postfix/qmgr[{rng.randrange(500, 1000)}]"

    def proc(self, prog: str) -> str:
        return f"{prog}[{self.rng.choice(self.pids[prog])}]"

    def attacker(self) -> str:
        # Squaring skews toward the front of the pool: a few addresses hammer, most try a
        # handful of times, as in real logs.
        return self.attackers[int(len(self.attackers) * self.rng.random() ** 2)]

    def queue_id(self) -> str:
        return f"{self.rng.getrandbits(44):011X}"

    def session(self) -> str:
        return base64.b64encode(self.rng.getrandbits(96).to_bytes(12, "big")).decode()


_PEER_DOMAINS = ("google.com", "outlook.com", "example.com", "example.net", "lists.example.com")
_TLS = (
    "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 "
    "server-signature RSA-PSS (2048 bits) server-digest SHA256"
)
_REJECTS = (
    "554 5.7.1 <{rcpt}>: Relay access denied; from=<{sender}> to=<{rcpt}> proto=ESMTP "
    "helo=<{helo}>",
    "450 4.7.1 Client host rejected: cannot find your hostname, [{ip}]; from=<{sender}> "
    "to=<{rcpt}> proto=ESMTP helo=<{helo}>",
    "554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; "
    "https://www.spamhaus.org/query/ip/{ip}; from=<{sender}> to=<{rcpt}> proto=ESMTP "
    "helo=<{helo}>",
    "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table; "
    "from=<{sender}> to=<{rcpt}> proto=ESMTP helo=<{helo}>",
)


def _deliveries(w: _World, qid: str, sender: str, rcpt: str, outbound: bool) -> Episode:
    rng = w.rng
    msgid = f"{rng.getrandbits(64):016x}.{rng.randrange(10**6)}@{sender.partition('@')[2]}"
    size = rng.randrange(900, 250_000)
    delay = rng.randrange(2, 4000) / 1000
    if outbound:
        mx = rng.choice(("gmail-smtp-in.l.google.com", "mx1.example.net", "mx.example.com"))
        relay = f"{mx}[{rng.choice(w.peers)}]:25"
        prog = w.proc("postfix/smtp")
        status = f"250 2.0.0 OK {rng.randrange(10**9, 2 * 10**9)} {w.session()} - gsmtp"
    elif rng.random() < 0.8:
        relay = f"{HOST}.{DOMAIN}[private/dovecot-lmtp]"
        prog = w.proc("postfix/lmtp")
        status = f"250 2.0.0 <{rcpt}> {w.session()} Saved"
    else:
        relay = "local"
        prog = w.proc("postfix/local")
        status = "delivered to mailbox"
    return [
        (w.proc("postfix/cleanup"), f"{qid}: message-id=<{msgid}>", None),
        (w.qmgr, f"{qid}: from=<{sender}>, size={size}, nrcpt=1 (queue active)", None),
        (
            prog,
            f"{qid}: to=<{rcpt}>, relay={relay}, delay={delay:.2g}, "
            f"delays={delay / 2:.2g}/0.01/0.02/{delay / 3:.2g}, dsn=2.0.0, status=sent ({status})",
            None,
        ),
        (w.qmgr, f"{qid}: removed", None),
    ]


def _inbound(w: _World) -> Episode:
    rng = w.rng
    i = rng.randrange(len(w.peers))
    client = f"{w.peer_names[i]}[{w.peers[i]}]"
    proc = w.proc("postfix/smtpd")
    qid = w.queue_id()
    tls = rng.random() < 0.7
    lines: Episode = [(proc, f"connect from {client}", None)]
    if tls:
        lines.append((proc, f"Anonymous TLS connection established from {client}: {_TLS}", None))
    lines.append((proc, f"{qid}: client={client}", None))
    lines += _deliveries(w, qid, rng.choice(w.senders), rng.choice(w.local_users), False)
    counts = (
        "ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7"
        if tls
        else "ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5"
    )
    lines.append((proc, f"disconnect from {client} {counts}", None))
    return lines


def _reject(w: _World) -> Episode:
    rng = w.rng
    ip = w.attacker() if rng.random() < 0.5 else rng.choice(w.peers)
    client = f"unknown[{ip}]"
    proc = w.proc("postfix/smtpd")
    text = rng.choice(_REJECTS).format(
        rcpt=f"{rng.choice(w.users).partition('@')[0]}@{DOMAIN}",
        sender=rng.choice(w.senders),
        helo=rng.choice(("WIN-3F2K1", "localhost", "[" + ip + "]", "mail.example.net")),
        ip=ip,
    )
    return [
        (proc, f"connect from {client}", None),
        (proc, f"NOQUEUE: reject: RCPT from {client}: {text}", None),
        (proc, f"disconnect from {client} ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4", None),
    ]


def _submission(w: _World) -> Episode:
    # A legitimate user sending through port 587: the successful-SASL shape.
    rng = w.rng
    user = rng.choice(w.local_users)
    client = f"unknown[{rng.choice(w.peers)}]"
    proc = w.proc("postfix/submission/smtpd")
    qid = w.queue_id()
    rcpt = rng.choice(w.senders)
    return [
        (proc, f"connect from {client}", None),
        (proc, f"Anonymous TLS connection established from {client}: {_TLS}", None),
        (proc, f"{qid}: client={client}, sasl_method=PLAIN, sasl_username={user}", None),
        *_deliveries(w, qid, user, rcpt, True),
        (
            proc,
            f"disconnect from {client} ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 "
            "commands=8",
            None,
        ),
    ]


def _imap_session(w: _World) -> Episode:
    rng = w.rng
    user = rng.choice(w.local_users)
    ip = rng.choice(w.peers)
    session = w.session()
    mpid = rng.randrange(1000, 65000)
    return [
        (
            "dovecot",
            f"imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip={SERVER_IP}, "
            f"mpid={mpid}, TLS, session=<{session}>",
            None,
        ),
        (
            "dovecot",
            f"imap({user})<{mpid}><{session}>: Disconnected: Logged out "
            f"in={rng.randrange(50, 900)} out={rng.randrange(500, 90_000)} deleted=0 "
            "expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
            None,
        ),
    ]


def _smtp_attack(w: _World) -> Episode:
    rng = w.rng
    ip = w.attacker()
    r = rng.random()
    if r < 0.34:
        # Older Postfix: no username, the reason is the base64 SASL challenge.
        kind = "smtpd_login_nouser"
        proc = w.proc("postfix/smtpd")
        client = f"unknown[{ip}]"
        fail = f"warning: {client}: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
    elif r < 0.67:
        kind = "submission_plain_user"
        proc = w.proc("postfix/submission/smtpd")
        client = f"{rng.choice(w.attacker_names)}[{ip}]"
        fail = (
            f"warning: {client}: SASL PLAIN authentication failed: (reason unavailable), "
            f"sasl_username={rng.choice(w.users)}"
        )
    elif r < 0.95:
        # smtpd_client_port_logging = yes (Postfix >= 2.5) logs the client as `[IP]:PORT`.
        kind = "smtps_login_port_user"
        proc = w.proc("postfix/smtps/smtpd")
        client = f"unknown[{ip}]"
        fail = (
            f"warning: {client}:{rng.randrange(1024, 65536)}: SASL LOGIN authentication failed: "
            f"authentication failure, sasl_username={rng.choice(w.users)}"
        )
    else:
        # The SASL backend (Dovecot auth) went away: not an attack, must not be recorded.
        kind = "server_error"
        proc = w.proc("postfix/submission/smtpd")
        client = f"unknown[{rng.choice(w.peers)}]"
        fail = (
            f"warning: {client}: SASL LOGIN authentication failed: Connection lost to "
            "authentication server, sasl_username=(unavailable)"
        )
    return [
        (proc, f"connect from {client}", None),
        (proc, fail, kind),
        (proc, f"lost connection after AUTH from {client}", None),
        (proc, f"disconnect from {client} ehlo=1 auth=0/1 commands=1/2", None),
    ]


def _dovecot_attack(w: _World) -> Episode:
    # Dovecot logs one line per disconnect, folding the attempts into it.
    rng = w.rng
    imap = rng.random() < 0.6
    kind = "dovecot_imap" if imap else "dovecot_pop3"
    n = 1 if rng.random() < 0.7 else rng.randrange(2, 4)
    user = rng.choice(w.users)
    method = rng.choice(("PLAIN", "LOGIN"))
    return [
        (
            "dovecot",
            f"{'imap' if imap else 'pop3'}-login: Disconnected (auth failed, {n} attempts in "
            f"{n * 2} secs): user=<{user}>, method={method}, "
            f"rip={w.attacker()}, lip={SERVER_IP}, TLS, session=<{w.session()}>",
            kind,
        )
    ]


# Episode mix. Normal episodes average ~6.2 lines (weighted); SMTP attacks are 4 lines with
# one failure, Dovecot attacks a single failure line. Solving F = 0.03 * (lines) for a
# 60/40 SMTP/Dovecot split of failures gives these weights: failures land near 3 %.
_EPISODES: tuple[tuple[Callable[[_World], Episode], float], ...] = (
    (_inbound, 40.0),
    (_reject, 25.0),
    (_submission, 8.0),
    (_imap_session, 20.0),
    (_smtp_attack, 9.7),
    (_dovecot_attack, 6.5),
)


def _stamp_formatters() -> tuple[Callable[[int], str], Callable[[int], str]]:
    """(classic, rfc3339) formatters from microseconds since START, caching per second."""
    start_s = int(START.timestamp())
    cache: dict[str, tuple[int, str]] = {"c": (-1, ""), "r": (-1, "")}

    def classic(t_us: int) -> str:
        sec = t_us // 1_000_000
        last, text = cache["c"]
        if sec != last:
            d = datetime.fromtimestamp(start_s + sec, UTC)
            text = f"{_MONTHS[d.month - 1]} {d.day:>2} {d:%H:%M:%S}"
            cache["c"] = (sec, text)
        return text

    def rfc3339(t_us: int) -> str:
        sec = t_us // 1_000_000
        last, text = cache["r"]
        if sec != last:
            d = datetime.fromtimestamp(start_s + sec, UTC)
            text = f"{d:%Y-%m-%dT%H:%M:%S}"
            cache["r"] = (sec, text)
        return f"{text}.{t_us % 1_000_000:06d}+00:00"

    return classic, rfc3339


def generate(path: str | Path, lines: int, seed: int = 42, stamps: str = "mixed") -> dict[str, int]:
    """Write a `lines`-line mail log to `path`; return what it contains.

    `stamps` is `classic` (`Nov 25 04:38:00`), `rfc3339` (`2026-11-25T04:38:00.123456+00:00`)
    or `mixed` (first half classic, second half RFC 3339). The returned dict has `lines`,
    `failure_lines` (lines with "authentication failed" or "auth failed"), `auth_failures`
    (those a parser must record: all but `server_error`), and one entry per FAILURE_KINDS.
    """
    if stamps not in STAMP_STYLES:
        raise ValueError(f"stamps must be one of {', '.join(STAMP_STYLES)}, not {stamps!r}")
    if lines < 0:
        raise ValueError("lines must be >= 0")
    rng = random.Random(seed)
    world = _World(rng)
    makers = [m for m, _ in _EPISODES]
    weights = [wt for _, wt in _EPISODES]
    classic, rfc3339 = _stamp_formatters()
    switch = {"classic": lines, "rfc3339": 0, "mixed": lines // 2}[stamps]
    counts = dict.fromkeys(FAILURE_KINDS, 0)

    def new_episode() -> Episode:
        # Reversed so the next line is a cheap pop() from the end.
        ep = rng.choices(makers, weights)[0](world)
        ep.reverse()
        return ep

    open_eps = [new_episode() for _ in range(CONCURRENT)]
    t_us = 0
    chunk: list[str] = []
    with open(path, "w", encoding="ascii", newline="\n", buffering=WRITE_BUFFER) as out:
        for n in range(lines):
            t_us += int(rng.expovariate(1.0) * MEAN_GAP_US)
            slot = rng.randrange(CONCURRENT)
            ep = open_eps[slot]
            prog, msg, kind = ep.pop()
            if not ep:
                open_eps[slot] = new_episode()
            if kind is not None:
                counts[kind] += 1
            stamp = classic(t_us) if n < switch else rfc3339(t_us)
            chunk.append(f"{stamp} {HOST} {prog}: {msg}\n")
            if len(chunk) >= CHUNK_LINES:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))
    failures = sum(counts.values())
    return {
        "lines": lines,
        "failure_lines": failures,
        "auth_failures": failures - sum(counts[k] for k in NOT_ATTACKS),
        **counts,
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: generate a log and print its counts."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    ap.add_argument("out", type=Path, help="file to write")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--stamps", choices=STAMP_STYLES, default="mixed")
    args = ap.parse_args(argv)
    counts = generate(args.out, args.lines, args.seed, args.stamps)
    width = max(map(len, counts))
    for key, value in counts.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
