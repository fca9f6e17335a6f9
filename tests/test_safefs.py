"""Issue 17 finding 5: links and other users' files in the state and CSV directories.

Each attack is planted for real (symbolic links, foreign owners, a umask of 000) and mlsd is
started as a real process, as root would run it; delivery goes to a real SMTP server.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from mlsd.errors import StateError
from mlsd.report.smtp import Outbox
from mlsd.safefs import check_dir, make_dir
from tests import smtpkit
from tests.followkit import ENV, Env, Writer, now_line, wait_for

SECRET = b"root:$6$c2VjcmV0LXNhbHQ$notarealhashbutsecretenough:19000:0:99999:7:::\n"
STRANGER = 4242
"""A uid no test runs as: "another user"."""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="planting foreign owners needs root")


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.write_bytes(SECRET)
    victim.chmod(0o600)
    return victim


def _scan(env: Env, *, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    def set_umask() -> None:
        if umask is not None:
            os.umask(umask)

    return subprocess.run(
        env.cmd("scan"),
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
        check=False,
        preexec_fn=set_umask,
    )


def _ready(env: Env) -> None:
    env.state.mkdir(mode=0o750)
    env.csv.parent.mkdir(mode=0o750)
    Writer(env.log).write(now_line("u1"))


# ---- links planted in the state and CSV directories


def test_a_lock_file_link_is_refused_and_its_target_untouched(env: Env, tmp_path: Path) -> None:
    """`mlsd.lock` → a victim: before, the lock's truncate emptied the victim."""
    _ready(env)
    victim = _victim(tmp_path)
    (env.state / "mlsd.lock").symlink_to(victim)
    res = _scan(env)
    assert res.returncode != 0
    assert f"{env.state / 'mlsd.lock'}: cannot open the lock file: it is a symbolic link" in (
        res.stderr
    )
    assert SECRET == victim.read_bytes()


def test_a_checkpoint_temp_link_is_replaced_not_followed(env: Env, tmp_path: Path) -> None:
    """`checkpoint.json.tmp` → a victim: before, the checkpoint was written into the victim."""
    _ready(env)
    victim = _victim(tmp_path)
    (env.state / "checkpoint.json.tmp").symlink_to(victim)
    res = _scan(env)
    assert res.returncode == 0, res.stderr
    assert SECRET == victim.read_bytes()
    assert (env.state / "checkpoint.json").is_file()
    assert not (env.state / "checkpoint.json").is_symlink()
    assert {"u1": 1} == dict(env.rows())


def test_a_csv_link_is_refused_and_nothing_is_created_at_its_target(
    env: Env, tmp_path: Path
) -> None:
    """The CSV path → elsewhere: before, the CSV was created at the link's target."""
    _ready(env)
    target = tmp_path / "elsewhere.csv"
    env.csv.symlink_to(target)
    res = _scan(env)
    assert res.returncode != 0
    assert f"{env.csv}: cannot open the CSV for writing: it is a symbolic link" in res.stderr
    assert not target.exists()


@pytest.mark.parametrize("linked", [True, False])
def test_a_foreign_csv_error_quotes_none_of_it(env: Env, tmp_path: Path, linked: bool) -> None:
    """A CSV that is (or links to) a shadow-like file: refused, and none of its bytes printed
    (before, the first 80 bytes were in the error)."""
    _ready(env)
    if linked:
        env.csv.symlink_to(_victim(tmp_path))
    else:
        env.csv.write_bytes(SECRET)
    res = _scan(env)
    assert res.returncode != 0
    assert str(env.csv) in res.stderr
    for piece in (b"root:", b"$6$", b"c2VjcmV0", b"19000"):
        assert piece.decode() not in res.stderr


def test_a_reports_link_sends_no_report_elsewhere(env: Env, tmp_path: Path) -> None:
    """`reports` → another directory: before, the daily report was written there."""
    _ready(env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (env.state / "reports").symlink_to(elsewhere)
    proc = env.start()
    # A fresh install has no day due yet (it never watched yesterday): ask for one.
    proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: "the reports directory is a symbolic link" in env.stderr(proc), 20)
    env.stop(proc)
    assert [] == list(elsewhere.iterdir())


# ---- directories others could write to


@pytest.mark.parametrize(
    ("which", "mode", "owner", "fix"),
    [
        ("state", 0o777, 0, "chmod 0755"),
        ("state", 0o770, 0, "chmod 0750"),
        ("state", 0o750, STRANGER, "chown 0"),
        ("csv", 0o757, 0, "chmod 0755"),
        ("csv", 0o700, STRANGER, "chown 0"),
    ],
)
def test_a_directory_others_can_write_to_is_refused_with_the_fix(
    env: Env, which: str, mode: int, owner: int, fix: str
) -> None:
    """A state or CSV directory writable by group/others or owned by another user: mlsd
    does not start, and says which directory and the command that fixes it."""
    _ready(env)
    directory = env.state if which == "state" else env.csv.parent
    os.chown(directory, owner, 0)
    directory.chmod(mode)
    res = _scan(env)
    assert res.returncode != 0
    lines = [line for line in res.stderr.splitlines() if f"{fix} {directory}" in line]
    assert lines, res.stderr
    assert str(directory) in lines[0]
    assert not env.csv.exists() or which == "csv" or env.csv.stat().st_size == 0


def test_directories_keep_their_mode_under_umask_000(env: Env) -> None:
    """Created under `umask 000`, every directory mlsd makes is 0750 (0700 for the cache):
    before, `outbox/` and the others followed the umask."""
    Writer(env.log).write(now_line("u1"))
    res = _scan(env, umask=0)
    assert res.returncode == 0, res.stderr
    proc = env.start()
    proc.send_signal(signal.SIGUSR1)  # a report, written to reports/ (no recipients)
    wait_for((env.state / "reports").is_dir, 20)
    env.stop(proc)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (env.state, env.csv.parent)}
    assert {"state": 0o750, "out": 0o750} == modes
    # The daemon inherited the test's umask; the outbox must not depend on either.
    old = os.umask(0)
    try:
        Outbox(env.state / "outbox").put(b"x", "a@example.org", ["b@example.org"], 0.0)
    finally:
        os.umask(old)
    for sub, want in (("reports", 0o750), ("outbox", 0o750), ("outbox/failed", 0o750)):
        assert want == stat.S_IMODE((env.state / sub).stat().st_mode), sub


def test_make_dir_and_check_dir(tmp_path: Path) -> None:
    """The primitives: exact mode whatever the umask; a link, a file, others' dir refused."""
    old = os.umask(0o077)
    try:
        make_dir(tmp_path / "a", 0o750, "state directory")
    finally:
        os.umask(old)
    assert 0o750 == stat.S_IMODE((tmp_path / "a").stat().st_mode)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    with pytest.raises(StateError, match="is a symbolic link"):
        check_dir(tmp_path / "link", "outbox", follow=False)
    check_dir(tmp_path / "link", "state directory", follow=True)  # the admin's own link
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError, match="not a directory"):
        make_dir(tmp_path / "file", 0o750, "outbox")


# ---- the outbox: a planted entry is never sent to anyone


def _plant(outbox: Path, name: str, eml: Path | bytes, rcpt: str, uid: int = 0) -> None:
    meta = outbox / f"{name}.json"
    entry = {
        "id": name,
        "sender": "mlsd@mail.example",
        "recipients": [rcpt],
        "created": time.time(),
        "next_attempt": 0.0,
    }
    meta.write_text(json.dumps(entry))
    target = outbox / f"{name}.eml"
    if isinstance(eml, Path):
        target.symlink_to(eml)
    else:
        target.write_bytes(eml)
    os.lchown(meta, uid, 0)
    os.lchown(target, uid, 0)


def test_planted_outbox_entries_are_never_sent(env: Env, tmp_path: Path) -> None:
    """Three planted entries: a message linked to a root-only file, an attacker's entry
    owned by another user, and one of ours addressed to someone not in `[report] to`.
    Only the daemon's own report reaches the server, and only the admin."""
    _ready(env)
    victim = _victim(tmp_path)
    outbox = env.state / "outbox"
    outbox.mkdir(mode=0o750)
    mail = b"Subject: hi\r\n\r\nhello\r\n"
    _plant(outbox, "20260101T000000-aaaaaaaa", victim, "admin@example.org")
    _plant(outbox, "20260101T000000-bbbbbbbb", mail, "evil@attacker.example", uid=STRANGER)
    _plant(outbox, "20260101T000000-cccccccc", mail, "evil@attacker.example")
    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        env.extra = (
            f"[report]\nto = admin@example.org\n"
            f"[smtp]\nhost = 127.0.0.1\nport = {server.port}\nsecurity = none\ntimeout = 5\n"
        )
        env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
        proc = env.start()
        proc.send_signal(signal.SIGUSR1)  # the daemon's own report (no day is due yet)
        wait_for(lambda: "report delivered" in env.stderr(proc), 30)
        wait_for(lambda: "not in [report] to" in env.stderr(proc), 10)
        env.stop(proc)
    finally:
        server.stop()
    recipients = [rcpt for _, rcpts, _ in sink.messages for rcpt in rcpts]
    assert "evil@attacker.example" not in recipients
    for _, _, body in sink.messages:
        assert b"c2VjcmV0" not in body and b"root:" not in body
    assert recipients == ["admin@example.org"]
    # Set aside for the operator, not deleted: the evidence stays.
    assert (outbox / "failed" / "20260101T000000-cccccccc.eml").exists()
    assert (outbox / "20260101T000000-bbbbbbbb.json").exists()
    assert (outbox / "failed" / "20260101T000000-aaaaaaaa.eml").is_symlink()
    assert SECRET == victim.read_bytes()


def test_an_outbox_others_can_write_to_is_not_used(env: Env) -> None:
    """An outbox left writable by everyone (any local user could plant entries): start-up
    refuses it, naming it and the fix."""
    _ready(env)
    outbox = env.state / "outbox"
    outbox.mkdir()
    outbox.chmod(0o777)
    env.extra = "[report]\nto = admin@example.org\n[smtp]\nhost = 127.0.0.1\nport = 9\n"
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    proc = env.start(wait=False)
    assert proc.wait(timeout=60) != 0
    assert f"chmod 0755 {outbox}" in env.stderr(proc)


def test_an_unreadable_report_state_is_not_quoted(env: Env) -> None:
    """`report.json` holding someone's secret: `status` says it is unreadable, quoting none
    of it (before: `Invalid isoformat string: 'root:$6$…'`)."""
    _ready(env)
    assert _scan(env).returncode == 0
    secret = SECRET.decode().strip()
    (env.state / "report.json").write_text(json.dumps({"last_queued": secret}))
    res = subprocess.run(
        env.cmd("status"), capture_output=True, text=True, timeout=60, env=ENV, check=False
    )
    out = res.stdout + res.stderr
    assert "report.json: unreadable (not mlsd's report state)" in out, out
    for piece in ("root:", "$6$", "c2VjcmV0"):
        assert piece not in out
