"""Config values that are mistakes, not attacks (issue 17, finding 7): refused at load time.

Ranges on every number, one printable line for every text value, and never a part of a
secret in an error, whichever way the secret was given.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlsd import config
from mlsd.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mlsd.conf"
    path.write_text(text)
    return path


def check_config(conf: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mlsd", "check-config", "-c", str(conf)],
        capture_output=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )


def test_multi_line_subject_prefix_is_refused(tmp_path: Path) -> None:
    """A continuation line used to pass check-config and then fail every report (a line
    break in a header); now the load fails, naming [report] subject_prefix."""
    conf = write(tmp_path, "[report]\nsubject_prefix = [mlsd]\n  Bcc: someone@example.org\n")
    with pytest.raises(ConfigError) as info:
        config.load(conf)
    assert ("report", "subject_prefix") == (info.value.section, info.value.key)
    assert "[mlsd]\\x0aBcc: someone@example.org" in str(info.value)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("paths", "csv", "/tmp/a.csv\n  [smtp] password = injected"),
        ("paths", "state_dir", "/tmp/s\x1b]0;PWNED\x07\x1b[2J"),
        ("paths", "mail_log", "/var/log/mail.log\u2028[smtp] password = injected"),
        ("geoip", "asn_db", "/x\u202e.mmdb"),
        ("report", "from", "mlsd\x1b[8m@example.org"),
        ("report", "to", "root@example.org\u200b"),
        ("smtp", "host", "relay.example.org\x07"),
        ("smtp", "username", "mlsd\x00"),
    ],
)
def test_text_values_are_one_printable_line(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    """Paths, addresses, host and username with a line break, ESC, BEL, NUL or an invisible
    character are refused; `check-config` says so on one inert line and forges none."""
    conf = write(tmp_path, f"[{section}]\n{key} = {value}\n")
    r = check_config(conf)
    assert 0 != r.returncode
    err = r.stderr.decode()
    assert f"[{section}] {key} = " in err and "expected one line of printable text" in err
    assert 1 == len(err.splitlines()), err
    for ch in "\x1b\x07\x00\u2028\u202e\u200b":
        assert ch not in err and ch.encode() not in r.stdout
    assert b"[smtp] password = injected" not in r.stdout
    assert not any(line.startswith("[smtp] password") for line in err.splitlines())


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("follow", "reconcile_interval", "1e-300"),
        ("follow", "reconcile_interval", "7200"),
        ("follow", "rotate_grace", "0.001"),
        ("smtp", "timeout", "1e308"),
        ("smtp", "timeout", "inf"),
        ("smtp", "retry_hours", "1e308"),
        ("dns", "timeout", "1e308"),
        ("dns", "cache_ttl", "1e-300"),
        ("dns", "failure_ttl", "nan"),
    ],
)
def test_numbers_out_of_range_are_refused(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    """A number far outside any sensible range (a spinning core, a hung send) is an error
    that names section and key and says the range."""
    with pytest.raises(ConfigError, match=r"expected a number of \w+ greater than 0, from ") as i:
        config.load(write(tmp_path, f"[{section}]\n{key} = {value}\n"))
    assert (section, key) == (i.value.section, i.value.key)


@pytest.mark.parametrize(
    ("section", "key", "lo", "hi"),
    [
        ("follow", "reconcile_interval", 0.1, 3600),
        ("follow", "rotate_grace", 0.1, 600),
        ("smtp", "timeout", 1, 600),
        ("smtp", "retry_hours", 0.1, 720),
        ("dns", "timeout", 0.05, 60),
        ("dns", "cache_ttl", 1, 604800),
        ("dns", "failure_ttl", 1, 86400),
    ],
)
def test_range_bounds_are_accepted(
    tmp_path: Path, section: str, key: str, lo: float, hi: float
) -> None:
    """Both documented bounds load."""
    for value in (lo, hi):
        cfg = config.load(write(tmp_path, f"[{section}]\n{key} = {value}\n"))
        assert value == getattr(getattr(cfg, section), key)


SECRET = "Pa\u00e9ss-W0rd-7"  # noqa: S105 - a test secret, looked for in the output


def test_non_utf8_password_file_shows_nothing_of_the_secret(tmp_path: Path) -> None:
    """The decoder's message (`can't decode byte 0xe9 in position 2`) named a byte of the
    secret and where it sits; the error now says what to do and nothing more."""
    pw = tmp_path / "smtp.pw"
    pw.write_bytes(SECRET.encode("latin-1") + b"\n")
    conf = write(
        tmp_path,
        f"[smtp]\nhost = relay.example.org\nsecurity = tls\nusername = u\npassword_file = {pw}\n",
    )
    r = check_config(conf)
    assert 0 != r.returncode
    err = r.stderr.decode()
    assert "[smtp] password_file" in err and "not UTF-8" in err
    for leak in ("0xe9", "\\xe9", "position", "ss-W0rd"):
        assert leak not in err, err


@pytest.mark.parametrize("how", ["password", "password_file"], ids=["inline", "file"])
def test_secret_with_a_control_character_is_refused_unseen(tmp_path: Path, how: str) -> None:
    """A secret holding ESC or an inner line break is refused without echoing any of it."""
    secret = "Secr\x1bet-Part2\nline-Two"  # noqa: S105 - a test secret
    if how == "password":
        body = f"password = {secret.replace(chr(10), chr(10) + '  ')}\n"
    else:
        pw = tmp_path / "smtp.pw"
        pw.write_text(secret + "\n")
        body = f"password_file = {pw}\n"
    conf = write(tmp_path, f"[smtp]\nhost = localhost\nusername = u\n{body}")
    with pytest.raises(ConfigError) as info:
        config.load(conf)
    assert "smtp" == info.value.section
    for part in ("Secr", "et-Part2", "line-Two", "\\x1b"):
        assert part not in str(info.value)
