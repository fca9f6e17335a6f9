"""A log, state directory or CSV directory mlsd may not use is said, never mistaken for a quiet one.

root reads and writes everything, so these tests run mlsd as `nobody` (group `nogroup`
only) through `setpriv`, as the shipped unit runs it as an unprivileged user: `run` as a
real daemon with a real notify socket, `scan` and `check-config` as real commands. The
files live in a directory of their own under /tmp, as pytest's tmp_path is reachable by
root only. The sentences of mlsd.access are checked apart, for identities no test can
become.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsd import access
from tests.followkit import ENV, Env, auth_line, users, wait_for
from tests.test_service import NotifySocket

SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
NOBODY = pwd.getpwnam("nobody")
UID, GID = NOBODY.pw_uid, NOBODY.pw_gid
WHO = f"uid={UID}(nobody) groups={GID}({grp.getgrgid(GID).gr_name})"
ADM = grp.getgrnam("adm").gr_gid

as_root = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="needs root to run mlsd as another user (CI runs as root; there it never skips)",
)


class Unprivileged(Env):
    """An installation whose mlsd runs as nobody: state and CSV directories are its own."""

    def __init__(self, root: Path, **follow: str) -> None:
        super().__init__(root, **follow)
        for d in (self.state, self.csv.parent):
            d.mkdir(mode=0o750)
            os.chown(d, UID, GID)

    def cmd(self, *args: str) -> list[str]:
        """`mlsd ARGS -c CONF` as nobody, without root's groups."""
        drop = [SETPRIV, f"--reuid={UID}", f"--regid={GID}", "--clear-groups"]
        return [*drop, *super().cmd(*args)]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """A command to completion, as nobody."""
        return subprocess.run(
            self.cmd(*args), capture_output=True, text=True, timeout=120, check=False, env=ENV
        )


@pytest.fixture
def site() -> Iterator[Unprivileged]:
    root = Path(tempfile.mkdtemp(prefix="mlsd-access-"))
    root.chmod(0o755)
    e = Unprivileged(root)
    probe = e.run("--version")
    assert probe.returncode == 0, f"mlsd cannot run as nobody here: {probe.stderr}"
    yield e
    e.cleanup()
    shutil.rmtree(root)


@pytest.fixture
def notify(site: Unprivileged) -> Iterator[NotifySocket]:
    ns = NotifySocket(site.root / "notify.sock")
    ns.path.chmod(0o666)  # sending is writing to the socket file: nobody must be allowed
    yield ns
    ns.close()


def _log(site: Env, seqs: range, *, mode: int, gid: int = 0) -> None:
    site.log.write_bytes(b"".join(_line(s) for s in seqs))
    os.chown(site.log, 0, gid)
    site.log.chmod(mode)


def _line(seq: int) -> bytes:
    return auth_line(seq)


def _ready_status(ns: NotifySocket) -> str:
    wait_for(lambda: ns.with_key("READY"), 30)
    return ns.with_key("READY")[0][1]["STATUS"]


# ---- run


@as_root
def test_run_says_it_cannot_read_the_log_and_reads_it_once_fixed(
    site: Unprivileged, notify: NotifySocket
) -> None:
    """A root 0600 log: READY=1 with STATUS= saying why, an error with the fix; a chmod
    and chgrp later, the lines are read without any write to the log and without waiting
    for the reconcile tick (30 s here): the directory's IN_ATTRIB wakes the follower."""
    site.write_conf({"reconcile_interval": "30", "rotate_grace": "1.0"})
    _log(site, range(3), mode=0o600)
    proc = site.start(env={"NOTIFY_SOCKET": str(notify.path)})
    status = _ready_status(notify)
    assert status.startswith(f"cannot read {site.log}: permission denied (root:root 0600;"), status
    assert "following" not in status
    wait_for(lambda: "cannot read the log file" in site.stderr(proc), 10)
    err = site.stderr(proc)
    assert "[error" in err
    sentence = (
        f"cannot read {site.log} ([paths] mail_log): it is root:root 0600 and mlsd runs as "
        f"{WHO}: make it readable by a group mlsd is in, as Debian does (chgrp adm {site.log} "
        f"&& chmod 0640 {site.log}, and `create 0640 root adm` in its logrotate rule) "
        f"(see ls -l {site.log})"
    )
    assert sentence in err, err
    # Still refused after a few status rounds: no "following" ever, nothing recorded.
    time.sleep(6)
    assert not any("following" in s for s in notify.statuses()), notify.statuses()
    assert site.rows() == users(())

    fixed_at = time.monotonic()
    os.chown(site.log, 0, GID)  # the group nobody is in
    site.log.chmod(0o640)
    site.wait_rows(users(range(3)), timeout=10)
    assert time.monotonic() - fixed_at < 10
    wait_for(lambda: any(s.startswith(f"following {site.log}") for s in notify.statuses()), 15)
    assert "log file readable again" in site.stderr(proc)
    assert site.stop(proc) == 0


@as_root
def test_run_says_when_a_rotation_creates_a_log_it_cannot_read(
    site: Unprivileged, notify: NotifySocket
) -> None:
    """Rotation with `create 0600 root root`: the old file is finished, then STATUS= and
    an error say the new one is refused (it used to go on saying "following"); after
    the chmod its lines are read."""
    _log(site, range(2), mode=0o644)
    proc = site.start(env={"NOTIFY_SOCKET": str(notify.path)})
    assert _ready_status(notify).startswith(f"following {site.log}")
    site.wait_rows(users(range(2)))
    site.log.rename(site.log.with_name("mail.log.1"))
    _log(site, range(2, 5), mode=0o600)
    wait_for(lambda: any(s.startswith(f"cannot read {site.log}") for s in notify.statuses()), 15)
    assert "cannot read the log file" in site.stderr(proc)
    assert site.rows() == users(range(2))
    site.log.chmod(0o644)
    site.wait_rows(users(range(5)), timeout=15)
    wait_for(lambda: notify.statuses()[-1].startswith(f"following {site.log}"), 15)
    assert site.stop(proc) == 0


@as_root
def test_run_warns_that_an_open_log_made_unreadable_could_not_be_reopened(
    site: Unprivileged, notify: NotifySocket
) -> None:
    """A chmod 0600 of the log being read: mlsd goes on reading through its descriptor
    (nothing is lost now) and says that a restart or a rotation could not open it."""
    _log(site, range(2), mode=0o644)
    proc = site.start(env={"NOTIFY_SOCKET": str(notify.path)})
    site.wait_rows(users(range(2)))
    site.log.chmod(0o600)
    wait_for(
        lambda: any(
            s.startswith(f"following {site.log} but could not open it again: permission denied")
            for s in notify.statuses()
        ),
        15,
    )
    assert "mlsd still reads it through the descriptor it opened before" in site.stderr(proc)
    with open(site.log, "ab") as fh:
        fh.write(b"".join(_line(s) for s in range(2, 4)))
    site.wait_rows(users(range(4)), timeout=15)
    assert site.stop(proc) == 0


@as_root
def test_run_notices_a_fixed_log_at_the_reconcile_tick_without_inotify(
    site: Unprivileged, notify: NotifySocket
) -> None:
    """The log's directory may be entered but not listed (0711), so no inotify watch can be
    set on it: the chmod that fixes the log is seen by the reconcile tick (1 s here), which
    looks at readability too, and not only at size and mtime (a chmod changes neither)."""
    _log(site, range(3), mode=0o600)
    site.logdir.chmod(0o711)
    proc = site.start(env={"NOTIFY_SOCKET": str(notify.path)})
    assert _ready_status(notify).startswith(f"cannot read {site.log}: permission denied")
    time.sleep(2)
    site.log.chmod(0o644)
    site.wait_rows(users(range(3)), timeout=10)
    assert site.stop(proc) == 0


@as_root
def test_run_behind_a_closed_directory_reads_once_it_opens(
    site: Unprivileged, notify: NotifySocket
) -> None:
    """The log's directory is root 0700: the error names that directory; once opened
    (no inotify watch could be set on it, so the reconcile tick notices), the lines are
    read, and lines written after that arrive too."""
    _log(site, range(2), mode=0o644)
    site.logdir.chmod(0o700)
    proc = site.start(env={"NOTIFY_SOCKET": str(notify.path)})
    status = _ready_status(notify)
    assert status.startswith(
        f"cannot read {site.log}: permission denied on directory {site.logdir} (root:root 0700;"
    ), status
    wait_for(lambda: "cannot read the log file" in site.stderr(proc), 10)
    assert (
        f"may not enter the directory {site.logdir}, which is root:root 0700: give it search "
        f"permission (chmod o+x {site.logdir}"
    ) in site.stderr(proc)
    site.logdir.chmod(0o755)
    site.wait_rows(users(range(2)), timeout=15)
    with open(site.log, "ab") as fh:
        fh.write(b"".join(_line(s) for s in range(2, 4)))
    site.wait_rows(users(range(4)), timeout=15)
    assert site.stop(proc) == 0


def test_run_with_a_directory_as_the_log_says_so(env: Env, tmp_path: Path) -> None:
    """[paths] mail_log names a directory: STATUS= and the error say it is not a file."""
    ns = NotifySocket(tmp_path / "notify.sock")
    try:
        env.log.mkdir()
        proc = env.start(env={"NOTIFY_SOCKET": str(ns.path)})
        status = _ready_status(ns)
        assert status.startswith(f"cannot read {env.log}: it is a directory, not a regular file")
        wait_for(lambda: "cannot read the log file" in env.stderr(proc), 10)
        assert f"{env.log} ([paths] mail_log) is a directory, not a regular file" in env.stderr(
            proc
        )
        assert env.stop(proc) == 0
    finally:
        ns.close()


@as_root
def test_run_refuses_a_state_directory_it_cannot_create(site: Unprivileged) -> None:
    """One sentence naming the path and [paths] state_dir, exit 1, never an internal error."""
    _log(site, range(1), mode=0o644)
    shutil.rmtree(site.state)
    (site.root / "locked").mkdir(mode=0o755)
    site.state = site.root / "locked" / "state"
    site.write_conf({"reconcile_interval": "1"})
    proc = site.start(wait=False)
    assert proc.wait(timeout=60) == 1
    last = site.stderr(proc).strip().splitlines()[-1]
    assert last == (
        f"mlsd: cannot create the state directory {site.state} ([paths] state_dir): "
        f"{site.root / 'locked'} is root:root 0755 and mlsd runs as {WHO}: create it for that "
        f"user (mkdir -p {site.state} && chown USER {site.state}; the shipped unit's "
        f"StateDirectory=/LogsDirectory= do this), or set [paths] state_dir to a directory it "
        f"may write (see ls -ld {site.root / 'locked'})"
    ), site.stderr(proc)


# ---- scan


@as_root
def test_scan_of_an_unreadable_log_exits_1_with_the_fix(site: Unprivileged) -> None:
    """root:adm 0640 and mlsd not in adm: exit 1, one sentence, the group to add."""
    _log(site, range(3), mode=0o640, gid=ADM)
    res = site.run("scan")
    assert res.returncode == 1, res.stderr
    assert res.stderr.splitlines()[-1] == (
        f"mlsd: cannot read {site.log} ([paths] mail_log): it is root:adm 0640 and mlsd runs "
        f"as {WHO}: add the service user to group adm (SupplementaryGroups=adm in the unit) "
        f"(see ls -l {site.log}); nothing was read"
    )
    assert not site.csv.exists()


def test_scan_of_a_directory_exits_1(env: Env) -> None:
    """mail_log is a directory: exit 1 and say so (it used to exit 0 having read nothing)."""
    env.log.mkdir()
    res = env.scan(check=False)
    assert res.returncode == 1, res.stderr
    assert f"{env.log} ([paths] mail_log) is a directory, not a regular file" in res.stderr


def test_scan_of_a_missing_log_still_waits_quietly(env: Env) -> None:
    """A log not created yet is not an error: exit 0, the warning of today."""
    res = env.scan(check=False)
    assert res.returncode == 0, res.stderr
    assert "waiting for the log file" in res.stderr


@as_root
@pytest.mark.parametrize(
    ("layout", "key", "expected"),
    [
        ("csv-dir", "[paths] csv", "cannot create the directory of the CSV {csvdir}"),
        ("csv-file", "[paths] csv", "cannot write the CSV {csv}"),
        ("state-owned", "[paths] state_dir", "cannot write the state directory {state}"),
        ("outbox", "[paths] state_dir", "cannot write the outbox {state}/outbox"),
        ("lock", "[paths] state_dir", "cannot write the lock file {state}/mlsd.lock"),
    ],
)
def test_scan_names_what_it_cannot_write(
    site: Unprivileged, layout: str, key: str, expected: str
) -> None:
    """Each place mlsd writes, refused: exit 1 and one sentence with the path and the key."""
    _log(site, range(1), mode=0o644)
    if layout == "csv-dir":
        (site.root / "nowhere").mkdir(mode=0o755)  # root's: nobody cannot create in it
        site.csv = site.root / "nowhere" / "out" / "mlsd.csv"
        site.write_conf({})
    elif layout == "csv-file":
        site.csv.write_text("x")  # root's, 0644
    elif layout == "state-owned":
        os.chown(site.state, 0, 0)
    elif layout == "outbox":
        (site.state / "outbox").mkdir(mode=0o750)  # left by a `sudo mlsd run`
    elif layout == "lock":
        (site.state / "mlsd.lock").write_text("")
    res = site.run("scan")
    want = expected.format(csv=site.csv, csvdir=site.csv.parent, state=site.state)
    assert res.returncode == 1, res.stderr
    last = res.stderr.splitlines()[-1]
    assert last.startswith(f"mlsd: {want} ({key}): "), res.stderr
    assert f"mlsd runs as {WHO}" in last
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr


# ---- check-config


@as_root
def test_check_config_warns_as_the_user_it_runs_as(site: Unprivileged) -> None:
    """As nobody: the log and a GeoIP file it cannot read are warnings; still exit 0."""
    _log(site, range(1), mode=0o640, gid=ADM)
    db = site.root / "country.mmdb"
    db.write_bytes(b"not read")
    db.chmod(0o600)
    site.extra = f"[geoip]\ncountry_db = {db}\n"
    site.write_conf({})
    res = site.run("check-config")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == (
        f"mlsd: warning: cannot read {site.log} ([paths] mail_log): it is root:adm 0640 and "
        f"mlsd runs as {WHO}: add the service user to group adm (SupplementaryGroups=adm in "
        f"the unit) (see ls -l {site.log})"
    )
    assert lines[1].startswith(
        f"mlsd: warning: cannot read the GeoIP database {db} ([geoip] country_db): it is "
        "root:root 0600"
    )
    assert lines[-1] == f"mlsd: {site.conf}: configuration is valid"


@as_root
@pytest.mark.parametrize(
    ("mode", "gid", "warned"),
    [(0o600, 0, True), (0o640, 0, True), (0o640, ADM, False), (0o644, 0, False)],
)
def test_check_config_as_root_judges_for_the_shipped_unit(
    site: Unprivileged, mode: int, gid: int, warned: bool
) -> None:
    """root reads everything: check-config judges the log for the shipped unit's user
    (an unprivileged user in group adm), which is who will read it."""
    env = site
    _log(env, range(1), mode=mode, gid=gid)
    res = subprocess.run(
        Env.cmd(env, "check-config"),  # as root
        capture_output=True,
        text=True,
        timeout=60,
        env=ENV,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    warning = [ln for ln in res.stderr.splitlines() if "warning:" in ln]
    assert bool(warning) == warned, res.stderr
    if warned:
        assert (
            "mlsd runs as the shipped unit's user (DynamicUser=yes, SupplementaryGroups=adm)"
            in warning[0]
        )
        assert str(env.log) in warning[0]


def test_check_config_warns_about_a_directory_as_the_log(env: Env) -> None:
    """Not a regular file: a warning with the key, exit 0."""
    env.log.mkdir()
    res = subprocess.run(
        env.cmd("check-config"), capture_output=True, text=True, timeout=60, env=ENV, check=False
    )
    assert res.returncode == 0
    assert (
        f"mlsd: warning: {env.log} ([paths] mail_log) is a directory, not a regular file"
        in res.stderr
    )


@as_root
def test_an_unreadable_geoip_database_says_the_fix(site: Unprivileged) -> None:
    """The daemon's warning about a GeoIP file it may not read carries the same sentence."""
    _log(site, range(1), mode=0o644)
    db = site.root / "country.mmdb"
    shutil.copy(Path(__file__).parent / "data" / "geoip" / "GeoLite2-Country-Test.mmdb", db)
    db.chmod(0o600)
    site.extra = f"[geoip]\ncountry_db = {db}\n"
    site.write_conf({})
    res = site.run("scan")
    assert res.returncode == 0, res.stderr
    assert "geoip database unusable, not loaded" in res.stderr
    assert (
        f"cannot read the GeoIP database {db} ([geoip]): it is root:root 0600 and mlsd runs as "
        f"{WHO}: make it readable (chmod 0644 {db}: it holds no secret)"
    ) in res.stderr, res.stderr


# ---- the sentences, for identities a test cannot become


@pytest.fixture
def public() -> Iterator[Path]:
    """A directory anyone may enter (pytest's tmp_path sits in a root-only 0700 one)."""
    d = Path(tempfile.mkdtemp(prefix="mlsd-access-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d)


def _who(*gids: int, uid: int = 4242) -> access.Who:
    return access.Who(uid=uid, gids=gids)


@pytest.mark.parametrize(
    ("mode", "group_of_file", "in_group", "fix"),
    [
        (0o640, ADM, False, "add the service user to group {group} (SupplementaryGroups={group}"),
        (0o600, ADM, True, "make it readable by a group mlsd is in"),
        (0o600, 0, False, "make it readable by a group mlsd is in"),
    ],
)
def test_the_fix_follows_the_mode(
    public: Path, mode: int, group_of_file: int, in_group: bool, fix: str
) -> None:
    """Group-readable for a group mlsd lacks: add the group; readable by its owner only:
    make it group-readable (Debian's root:adm 0640)."""
    log = public / "mail.log"
    log.write_bytes(b"x\n")
    log.chmod(mode)
    if os.geteuid() == 0:
        os.chown(log, 0, group_of_file)
    gid = log.stat().st_gid
    who = _who(gid) if in_group else _who(9999)
    found = access.probe_read(log, who)
    assert found.verdict is access.Verdict.DENIED
    text = access.sentence(found, "[paths] mail_log")
    assert fix.format(group=grp.getgrgid(gid).gr_name) in text, text
    assert f"{mode:04o} and mlsd runs as uid=4242" in text and f"see ls -l {log}" in text


def test_a_readable_log_and_a_missing_one_are_not_problems(public: Path) -> None:
    """OK for a file the identity may read, MISSING (not DENIED) for an absent one."""
    log = public / "mail.log"
    assert access.probe_read(log).verdict is access.Verdict.MISSING
    log.write_bytes(b"x\n")
    log.chmod(0o644)
    assert access.probe_read(log, _who(9999)).ok
    assert access.probe_read(log).ok


def test_a_fifo_is_judged_without_opening_it(tmp_path: Path) -> None:
    """A FIFO as the log: NOT_REGULAR at once (opening it for reading would block)."""
    fifo = tmp_path / "mail.log"
    os.mkfifo(fifo)
    started = time.monotonic()
    found = access.probe_read(fifo)
    assert (found.verdict, found.kind) == (access.Verdict.NOT_REGULAR, "FIFO (named pipe)")
    assert time.monotonic() - started < 1


def test_a_file_in_the_way_of_the_state_directory(tmp_path: Path) -> None:
    """A file where a directory must be: NOT_DIRECTORY naming that file."""
    (tmp_path / "state").write_text("")
    found = access.probe_dir(tmp_path / "state" / "sub")
    assert (found.verdict, found.blocker) == (access.Verdict.NOT_DIRECTORY, tmp_path / "state")
    assert access.sentence(found, "[paths] state_dir", noun="the state directory") == (
        f"cannot use the state directory {tmp_path / 'state' / 'sub'} ([paths] state_dir): "
        f"{tmp_path / 'state'} is a regular file, not a directory: move it aside or set "
        "[paths] state_dir elsewhere"
    )
