"""[fleet]: the url never holds a password, the password file is read and never shown."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlsd import config
from tests.test_config import error, load

SECRET = "Fl33t-s3cret-pw"  # noqa: S105 - a test value that must never show


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"postgresql://mx1:{SECRET}@db.example.org/mlsd",
            "[fleet] url = ***: expected a URL without a password (check-config and the logs "
            "show the url): put the password in [fleet] password_file",
        ),
        (
            f"postgresql://mx1@db.example.org/mlsd?sslmode=require&password={SECRET}",
            "[fleet] url = ***: expected a URL without a password",
        ),
        (
            "mysql://mx1@db.example.org/mlsd",
            "[fleet] url = ***: expected a URL such as postgresql://mx1@db.example.org/mlsd",
        ),
        (
            "postgresql://mx1@db.example.org",
            "[fleet] url = ***: expected a URL such as postgresql://mx1@db.example.org/mlsd",
        ),
    ],
)
def test_a_bad_url_is_refused_without_echoing_it(tmp_path: Path, url: str, expected: str) -> None:
    """A url with a password is refused, and the refusal does not print the password."""
    msg = error(tmp_path, f"[fleet]\nurl = {url}\n")
    assert expected in msg
    assert SECRET not in msg


def test_the_password_file_is_read_and_never_rendered(tmp_path: Path) -> None:
    """The secret is a `Secret` (repr ***); check-config's rendering never shows it."""
    pw = tmp_path / "fleet.pass"
    pw.write_text(SECRET + "\n")
    cfg = load(
        tmp_path,
        f"[fleet]\nurl = postgresql://mx1@db.example.org/mlsd\npassword_file = {pw}\n",
    )
    assert cfg.fleet.password is not None
    assert SECRET == cfg.fleet.password.reveal()
    assert SECRET not in config.render(cfg)
    assert SECRET not in repr(cfg)


def test_an_unreadable_password_file_names_section_and_key(tmp_path: Path) -> None:
    """The error says which key and file; a file with a line break inside is not shown."""
    msg = error(tmp_path, f"[fleet]\npassword_file = {tmp_path / 'nope'}\n")
    assert f"[fleet] password_file = '{tmp_path / 'nope'}': cannot read it" in msg
    pw = tmp_path / "two-lines"
    pw.write_text(SECRET + "\nmore\n")
    msg = error(tmp_path, f"[fleet]\npassword_file = {pw}\n")
    assert "[fleet] password_file" in msg
    assert SECRET not in msg


def test_node_defaults_to_the_host_name(tmp_path: Path) -> None:
    """Empty node: the host's name; a name longer than a role name is refused."""
    assert socket.gethostname() == load(tmp_path, "").fleet.node_name()
    assert "mx9" == load(tmp_path, "[fleet]\nnode = mx9\n").fleet.node_name()
    msg = error(tmp_path, f"[fleet]\nnode = {'x' * 64}\n")
    assert "at most 63 bytes" in msg


def test_keep_months_is_bounded(tmp_path: Path) -> None:
    """0 keeps all; negative is refused with the range."""
    assert 0 == load(tmp_path, "").fleet.keep_months
    assert 13 == load(tmp_path, "[fleet]\nkeep_months = 13\n").fleet.keep_months
    msg = error(tmp_path, "[fleet]\nkeep_months = -1\n")
    assert "[fleet] keep_months = '-1': expected a whole number from 0 to 1200" in msg
