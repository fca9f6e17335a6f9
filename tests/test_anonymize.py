"""`mlsd anonymize`: the corpus, anonymised, parses to the same events with consistent
pseudonyms, and none of its IPs, usernames or hostnames is left (issue 21)."""

from __future__ import annotations

import ipaddress
import re
import stat
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlsd.app.anonymize import Anonymizer
from mlsd.app.cli import main
from mlsd.ingest.grammar import AuthFailure, parse_line

CORPUS = Path(__file__).parent / "corpus"
LOGS = sorted(CORPUS.glob("*/*.log"))
REF = datetime(2026, 12, 31, tzinfo=UTC)
KEY = b"0123456789abcdef0123456789abcdef"


def _events(lines: list[bytes]) -> list[object]:
    return [parse_line(line, REF, UTC) for line in lines]


def _bijection(pairs: list[tuple[str, str]], what: str) -> None:
    """Same value → same pseudonym, different values → different pseudonyms."""
    forward: dict[str, str] = {}
    backward: dict[str, str] = {}
    for a, b in pairs:
        assert forward.setdefault(a, b) == b, f"{what} {a!r} got two pseudonyms"
        assert backward.setdefault(b, a) == a, f"{what} pseudonym {b!r} stands for two values"


def _count(value: str, text: str) -> int:
    return len(re.findall(rf"(?<![0-9A-Za-z]){re.escape(value)}(?![0-9A-Za-z])", text))


@pytest.mark.parametrize("log", LOGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_an_anonymised_log_parses_to_the_same_events(log: Path) -> None:
    original = log.read_bytes().splitlines(keepends=True)
    anon = Anonymizer(KEY)
    changed = [anon.line(line) for line in original]
    before, after = _events(original), _events(changed)
    assert len(before) == len(after)
    found = [(b, a) for b, a in zip(before, after, strict=True) if isinstance(b, AuthFailure)]
    for b, a in zip(before, after, strict=True):
        if not isinstance(b, AuthFailure):
            assert b == a, "a skip or a non-event stays what it was"
    pairs = [(b, a) for b, a in found if isinstance(a, AuthFailure)]
    assert len(pairs) == len(found), "every event is still an event"
    assert Counter((b.service, b.mechanism) for b, _ in pairs) == Counter(
        (a.service, a.mechanism) for _, a in pairs
    )
    for b, a in pairs:
        assert (b.time, b.attempts) == (a.time, a.attempts)
        assert ipaddress.ip_address(b.ip).version == ipaddress.ip_address(a.ip).version
        assert (b.user is None) == (a.user is None)
        assert (b.hostname == "unknown") == (a.hostname == "unknown")
    _bijection([(b.ip, a.ip) for b, a in pairs], "IP")
    _bijection([(b.user or "", a.user or "") for b, a in pairs], "username")
    _bijection([(b.hostname, a.hostname) for b, a in pairs], "hostname")
    _bijection([(b.server, a.server) for b, a in pairs], "server")
    text = b"".join(changed).decode("latin-1")
    assert not [b.ip for b, _ in pairs if _count(b.ip, text)], "an IP is left"
    # A username or hostname may also be a word of the message (`proxy`, `authentication
    # failed`, `mail`): each line must have lost it where it was a value, and the event
    # read from the line must carry the pseudonym.
    leaks = []
    for line_in, line_out, b, a in zip(original, changed, before, after, strict=True):
        if not isinstance(b, AuthFailure) or not isinstance(a, AuthFailure):
            continue
        for v, w in ((b.user or "", a.user), (b.hostname, a.hostname), (b.server, a.server)):
            if v in ("", "unknown", "(unavailable)"):
                continue
            raw_in, raw_out = line_in.decode("latin-1"), line_out.decode("latin-1")
            if v == w or _count(v, raw_out) >= _count(v, raw_in):
                leaks.append(v)
    assert not leaks, f"left in the output: {sorted(set(leaks))}"


def test_the_corpus_has_events_of_every_service() -> None:
    """The test above is not vacuous: the corpus holds events of Postfix and Dovecot."""
    events = [
        e
        for log in LOGS
        for e in _events(log.read_bytes().splitlines(keepends=True))
        if isinstance(e, AuthFailure)
    ]
    assert len(events) > 200
    assert {"smtp", "imap", "pop3"} <= {e.service for e in events}


def test_the_same_key_gives_the_same_pseudonyms_across_files_and_runs() -> None:
    line = (
        b"Nov 25 04:42:00 mail dovecot: imap-login: Disconnected (auth failed, 1 attempts in "
        b"2 secs): user=<bob@example.org>, method=PLAIN, rip=192.0.2.20, lip=192.0.2.1\n"
    )
    one, two = Anonymizer(KEY).line(line), Anonymizer(KEY).line(line)
    other = Anonymizer(b"another key, 32 bytes long......").line(line)
    assert one == two
    assert one != other
    assert b"192.0.2" not in one and b"bob" not in one and b"example.org" not in one


def test_ipv6_and_ports_and_given_passwords() -> None:
    anon = Anonymizer(KEY)
    out = anon.line(
        b"Nov 25 04:40:02 mx postfix/smtpd[1]: warning: mail.example.net[2001:db8:1::25]:587: "
        b"SASL LOGIN authentication failed: x, sasl_username=a@b.example\n"
    ).decode()
    assert "2001:db8:1::25" not in out and "mail.example.net" not in out
    assert re.search(r"h[0-9a-f]{10}\.example\[2001:db8:[0-9a-f:]+\]:587: SASL LOGIN", out), out
    dove = anon.line(
        b"Nov 25 04:38:58 auth: Info: passwd-file(alice@lab.example,192.0.2.66): "
        b"Password mismatch (given password: hunter2)\n"
    ).decode()
    assert "alice" not in dove and "192.0.2.66" not in dove and "hunter2" not in dove
    assert "lab.example" not in dove


def test_the_command_creates_a_private_key_and_reuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k" / "anon.key"
    log = CORPUS / "realworld" / "forms.log"
    out1, out2 = tmp_path / "a.log", tmp_path / "b.log"
    assert main(["anonymize", str(log), "-o", str(out1), "--key-file", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "new key written" in capsys.readouterr().err
    assert main(["anonymize", str(log), "-o", str(out2), "--key-file", str(key)]) == 0
    assert out1.read_bytes() == out2.read_bytes()
    assert len(out1.read_bytes().splitlines()) == len(log.read_bytes().splitlines())
    assert "new key" not in capsys.readouterr().err


@given(st.binary(max_size=300))
def test_any_bytes_give_one_line_and_never_raise(raw: bytes) -> None:
    """Attacker-written lines: never an exception, and the line count is kept."""
    line = raw.replace(b"\n", b" ") + b"\n"
    out = Anonymizer(KEY).line(line)
    assert out.count(b"\n") == 1 and out.endswith(b"\n")


def test_the_output_may_not_be_an_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`-o` onto the log itself would truncate it before it is read."""
    log = tmp_path / "mail.log"
    log.write_bytes((CORPUS / "realworld" / "forms.log").read_bytes())
    before = log.read_bytes()
    code = main(["anonymize", str(log), "-o", str(log), "--key-file", str(tmp_path / "k")])
    assert code != 0
    assert "is also an input" in capsys.readouterr().err
    assert log.read_bytes() == before
