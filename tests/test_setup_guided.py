"""`mlsd setup` against fake machine layouts: each is a table row of files, run through the
real command (`--root` points the probe at it, `--mta` at a loopback port the test opens or
one nobody listens on), and `mlsd check-config` must accept what it wrote."""

from __future__ import annotations

import os
import pty
import re
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlsd import config
from mlsd.app import setupprobe
from tests.followkit import ENV

REPO = Path(__file__).resolve().parent.parent
RSYSLOG = "mail.*\t\t\t-/var/log/mail.log\n"
COUNTRY, ASN = "var/lib/GeoIP/GeoLite2-Country.mmdb", "var/lib/GeoIP/GeoLite2-ASN.mmdb"


@dataclass(frozen=True)
class Case:
    """A machine: files (path under / → text, mode), and what the written config says."""

    name: str
    files: Mapping[str, tuple[str, int]]
    dirs: tuple[str, ...] = ()
    mta: bool = True
    kind: str = "file"
    mail_log: str | None = "/var/log/mail.log"
    country_db: str = str(config.GeoipConfig().country_db)
    asn_db: str = str(config.GeoipConfig().asn_db)
    timezone: str = "Europe/Paris"
    says: tuple[str, ...] = ()
    """Substrings of the written file (its comments)."""
    warns: tuple[str, ...] = ()
    """Substrings of setup's stderr."""
    flags: tuple[str, ...] = field(default=())


BASE = {"etc/timezone": ("Europe/Paris\n", 0o644)}

CASES = [
    Case(
        "debian rsyslog mail.log root:adm 0640",
        {**BASE, "var/log/mail.log": ("x\n", 0o640), "etc/rsyslog.conf": (RSYSLOG, 0o644)},
        says=(
            "root:adm 0640: the members of group adm may read it",
            "The service's user may read it",
            "A local MTA accepted",
        ),
    ),
    Case(
        "no mail.log and no rsyslog: the journal",
        BASE,
        dirs=("var/log/journal",),
        kind="journal",
        mail_log=None,
        says=("journal: no mail log file here", "adm systemd-journal"),
    ),
    Case(
        "rsyslog writes mail.log, not there yet",
        {**BASE, "etc/rsyslog.conf": (RSYSLOG, 0o644)},
        says=("Not there yet: rsyslog's rule",),
    ),
    Case(
        "Postfix maillog_file, root-only: it wins over mail.log, and the fix is said",
        {
            **BASE,
            "etc/postfix/main.cf": (
                "myhostname = mx\nmaillog_file = /var/log/postfix.log\n",
                0o644,
            ),
            "var/log/postfix.log": ("x\n", 0o600),
            "var/log/mail.log": ("x\n", 0o640),
        },
        mail_log="/var/log/postfix.log",
        says=("Postfix's maillog_file (/etc/postfix/main.cf)", "root:adm 0600: only root may"),
        warns=("cannot read /var/log/postfix.log", "chgrp adm /var/log/postfix.log"),
    ),
    Case(
        "GeoLite2 databases at the default paths",
        {**BASE, "var/log/mail.log": ("x\n", 0o640), COUNTRY: ("", 0o644), ASN: ("", 0o644)},
        says=("The country database found: /var/lib/GeoIP/GeoLite2-Country.mmdb",),
    ),
    Case(
        "DB-IP Lite in /usr/share/GeoIP: the paths are written",
        {
            **BASE,
            "var/log/mail.log": ("x\n", 0o640),
            "usr/share/GeoIP/dbip-country-lite-2026-10.mmdb": ("", 0o644),
            "usr/share/GeoIP/dbip-country-lite-2026-11.mmdb": ("", 0o644),
            "usr/share/GeoIP/dbip-asn-lite-2026-11.mmdb": ("", 0o644),
        },
        country_db="/usr/share/GeoIP/dbip-country-lite-2026-11.mmdb",
        asn_db="/usr/share/GeoIP/dbip-asn-lite-2026-11.mmdb",
    ),
    Case(
        "no GeoIP database, no MTA, a /etc/localtime link",
        {"var/log/mail.log": ("x\n", 0o640)},
        mta=False,
        timezone="America/New_York",
        says=("No country database found", "`mlsd geoip update`", "host = relay.example.org"),
        warns=("no local MTA",),
    ),
    Case(
        "--source journal and --log are taken as given",
        {**BASE, "var/log/mail.log": ("x\n", 0o640)},
        kind="journal",
        mail_log=None,
        says=("journal: asked for with --source journal",),
        warns=("no journal directory",),
        flags=("--source", "journal"),
    ),
]


@pytest.fixture
def mta() -> Iterator[int]:
    """A port on loopback that accepts connections (a listening socket is what is probed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def make_machine(root: Path, case: Case) -> None:
    """The layout, with this process's uid and gid named root and adm in its /etc."""
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(f"root:x:{os.getuid()}:{os.getgid()}::/root:/bin/sh\n")
    (root / "etc/group").write_text(f"adm:x:{os.getgid()}:\n")
    for rel, (text, mode) in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chown(path, -1, os.getgid())
        path.chmod(mode)
    for rel in case.dirs:
        (root / rel).mkdir(parents=True)
    if "etc/timezone" not in case.files:
        (root / "etc/localtime").symlink_to(f"/usr/share/zoneinfo/{case.timezone}")


def mlsd(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlsd", *argv],
        input=stdin, capture_output=True, text=True, timeout=60, env=ENV, check=False,
    )  # fmt: skip


def setup_argv(root: Path, out: Path, port: int, *more: str) -> list[str]:
    return ["setup", "--root", str(root), "-o", str(out), "--mta", f"127.0.0.1:{port}", *more]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_setup_writes_a_config_check_config_accepts(case: Case, tmp_path: Path, mta: int) -> None:
    """Each layout: the right choices, their reasons in comments, 0640, check-config exit 0."""
    root, out = tmp_path / "machine", tmp_path / "etc-mlsd" / "mlsd.conf"
    make_machine(root, case)
    port = mta if case.mta else _closed_port()
    argv = setup_argv(root, out, port, "--non-interactive", "--to", "sec@example.org")
    res = mlsd(*argv, *case.flags)
    assert res.returncode == 0, res.stderr
    assert f"wrote {out}" in res.stdout
    assert "mlsd check-config -c" in res.stdout and "mlsd status" in res.stdout
    assert "systemctl enable --now mlsd" in res.stdout
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    check = mlsd("check-config", "-c", str(out))
    assert check.returncode == 0, check.stderr

    cfg = config.load(out)
    text = out.read_text()
    assert cfg.source.kind == case.kind
    if case.mail_log is not None:
        assert str(cfg.paths.mail_log) == case.mail_log
        assert re.search(r"^mail_log = ", text, re.M)
    else:
        assert "mail_log" not in text
    assert cfg.report.to == ("sec@example.org",)
    assert cfg.report.timezone == case.timezone
    assert (str(cfg.geoip.country_db), str(cfg.geoip.asn_db)) == (case.country_db, case.asn_db)
    assert (cfg.smtp.host, cfg.smtp.port) == (
        ("127.0.0.1", port) if case.mta else ("localhost", 25)
    )
    flat = " ".join(line.lstrip("# ") for line in text.splitlines())
    for words in case.says:
        assert words in flat, text
    for words in case.warns:
        assert words in res.stderr
    # Only keys that differ from the defaults or that the admin must see.
    assert "reconcile_interval" not in text and "[dns]" not in text


def test_an_existing_config_is_kept_as_a_dated_copy(tmp_path: Path, mta: int) -> None:
    """The old file survives, byte for byte, as PATH.YYYYmmdd-HHMMSS with its mode narrowed
    to 0640; a second run the same second gets a name of its own."""
    root, out = tmp_path / "machine", tmp_path / "mlsd.conf"
    make_machine(root, CASES[0])
    out.write_text("[report]\nto = old@example.org\n")
    out.chmod(0o644)
    argv = setup_argv(root, out, mta, "--non-interactive", "--to", "new@example.org")
    for _ in range(2):
        assert mlsd(*argv).returncode == 0
    copies = sorted(tmp_path.glob("mlsd.conf.*"))
    assert len(copies) == 2, copies
    assert re.fullmatch(r"mlsd\.conf\.\d{8}-\d{6}", copies[0].name)
    assert copies[0].read_text() == "[report]\nto = old@example.org\n"
    assert "new@example.org" in copies[1].read_text()
    assert {stat.S_IMODE(c.stat().st_mode) for c in copies} == {0o640}
    assert config.load(out).report.to == ("new@example.org",)


def test_a_symbolic_link_in_place_of_the_config_is_not_followed(tmp_path: Path, mta: int) -> None:
    """A link at -o is refused (exit 1): its target is left as it was."""
    root, out, target = tmp_path / "machine", tmp_path / "mlsd.conf", tmp_path / "shadow"
    make_machine(root, CASES[0])
    target.write_text("secret\n")
    out.symlink_to(target)
    res = mlsd(*setup_argv(root, out, mta, "--non-interactive", "--to", "a@example.org"))
    assert res.returncode == 1 and "symbolic link" in res.stderr
    assert target.read_text() == "secret\n" and out.is_symlink()


@pytest.mark.parametrize(
    ("more", "flag"),
    [
        ((), "--to"),
        (("--to", "not-an-address"), "--to"),
        (("--to", "a@b.org", "--source", "file"), "--log"),
        (("--to", "a@b.org", "--source", "journal", "--log", "/x.log"), "--log"),
    ],
)
def test_non_interactive_names_the_missing_flag(
    more: tuple[str, ...], flag: str, tmp_path: Path
) -> None:
    """Nothing to ask on: exit 2 with the flag named, and nothing written."""
    root, out = tmp_path / "machine", tmp_path / "mlsd.conf"
    make_machine(root, CASES[1])  # no mail log file anywhere
    res = mlsd(*setup_argv(root, out, _closed_port(), "--non-interactive", *more))
    assert res.returncode == 2
    assert flag in res.stderr and res.stderr.startswith("mlsd: setup: ")
    assert not out.exists()


def test_without_a_terminal_it_does_not_ask(tmp_path: Path) -> None:
    """No --non-interactive, but stdin is a pipe: the same exit 2 naming --to, no prompt."""
    root, out = tmp_path / "machine", tmp_path / "mlsd.conf"
    make_machine(root, CASES[0])
    res = mlsd(*setup_argv(root, out, _closed_port()), stdin="a@example.org\n")
    assert res.returncode == 2 and "--to" in res.stderr and "Who gets" not in res.stderr


def test_interactive_asks_for_the_recipients_on_a_terminal(tmp_path: Path, mta: int) -> None:
    """On a pty: a bad answer is explained and asked again; root's alias is offered."""
    root, out = tmp_path / "machine", tmp_path / "mlsd.conf"
    make_machine(root, CASES[0])
    (root / "etc/aliases").write_text("postmaster: root\nroot: admin@example.org, alice\n")
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlsd", *setup_argv(root, out, mta)],
            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
        )  # fmt: skip
        os.write(leader, b"nobody\nsec@example.org, ops@example.org\n")
        _, stderr = proc.communicate(timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    assert proc.returncode == 0, stderr
    assert stderr.count(b"Who gets the daily report?") == 2
    assert b"[admin@example.org]" in stderr and b"expected e-mail addresses" in stderr
    assert config.load(out).report.to == ("sec@example.org", "ops@example.org")
    assert "answered at the prompt" in out.read_text()
    assert mlsd("check-config", "-c", str(out)).returncode == 0


def test_the_default_unit_groups_are_the_shipped_units() -> None:
    """The probe's fallback for an uninstalled unit is what contrib/systemd/mlsd.service says."""
    unit = (REPO / "contrib/systemd/mlsd.service").read_text()
    line = next(x for x in unit.splitlines() if x.startswith("SupplementaryGroups="))
    assert tuple(line.partition("=")[2].split()) == setupprobe.UNIT_GROUPS


def test_an_installed_unit_and_its_drop_ins_decide_the_groups(tmp_path: Path) -> None:
    """`systemctl edit mlsd` drop-ins: an empty assignment resets, later ones add."""
    unit = tmp_path / "etc/systemd/system/mlsd.service"
    (unit.parent / "mlsd.service.d").mkdir(parents=True)
    unit.write_text("[Service]\nSupplementaryGroups=adm systemd-journal\n")
    (unit.parent / "mlsd.service.d/override.conf").write_text(
        "[Service]\nSupplementaryGroups=\nSupplementaryGroups=maillog\n"
    )
    found = setupprobe.probe(tmp_path, mta=("127.0.0.1", _closed_port()), timeout=0.2)
    assert found.unit_groups == ("maillog",)
    assert found.unit_from == "/etc/systemd/system/mlsd.service"
