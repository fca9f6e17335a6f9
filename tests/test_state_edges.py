"""Small hostile-neighbour findings of issue 17 (finding 8): each a clear sentence, no damage.

- `purge --archive STATE/outbox` moved three items, then failed with EINVAL, leaving the
  archive inside the live outbox: an archive directory inside what is moved is refused.
- `report --day 0001-01-01` raised an internal OverflowError.
- A full state directory gave "internal error: OSError ENOSPC" naming no file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlsd.durable import replace_atomically
from mlsd.report.smtp import Outbox
from tests.followkit import ENV, Env

CORPUS_LOG = Path(__file__).parent / "corpus" / "maillogsentinel" / "sample_sasl.log"


def mlsd(env: Env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        env.cmd(*args), capture_output=True, text=True, timeout=120, env=ENV, check=False
    )


def own_lines(stderr: str) -> list[str]:
    """mlsd's own messages (`mlsd: …`), without the log lines (GeoIP warnings and such)."""
    return [line for line in stderr.splitlines() if line.startswith("mlsd")]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    e.log.write_bytes(CORPUS_LOG.read_bytes())
    yield e
    e.cleanup()


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(
    ("command", "inside"),
    [
        ("purge", "outbox"),
        ("purge", "outbox/failed"),
        ("purge", "reports/old"),
        ("reset", "days"),
        ("purge", "link-to-outbox"),
    ],
)
def test_archive_inside_a_moved_path_is_refused_before_any_move(
    env: Env, command: str, inside: str
) -> None:
    """Nothing moves, and the message names the archive directory and what it is inside."""
    env.scan()
    Outbox(env.state / "outbox").put(
        b"Subject: x\r\n\r\nx\r\n", "a@example.org", ["b@example.org"], 0
    )
    (env.state / "days").mkdir(exist_ok=True)
    (env.state / "reports").mkdir(exist_ok=True)
    (env.state / "link-to-outbox").symlink_to(env.state / "outbox")
    before = snapshot(env.root)
    res = mlsd(env, command, "--yes", "--archive", str(env.state / inside))
    assert 1 == res.returncode, res.stderr
    (line,) = own_lines(res.stderr)
    assert (
        f"mlsd: {command} refused: {env.state / inside}: the archive directory would be inside"
        in line
    )
    assert "nothing moved" in line
    assert before == snapshot(env.root)


def test_archive_beside_the_state_is_still_fine(env: Env) -> None:
    """An archive directory outside the moved paths (even inside the state directory) works."""
    env.scan()
    res = mlsd(env, "purge", "--yes", "--archive", str(env.state / "archives"))
    assert 0 == res.returncode, res.stderr
    assert not env.csv.exists()


@pytest.mark.parametrize("day", ["0001-01-01", "1969-12-31"])
def test_report_of_a_day_before_1970_is_a_usage_error(env: Env, day: str) -> None:
    """A clear argument error, not an internal OverflowError."""
    res = mlsd(env, "report", "--day", day)
    assert 2 == res.returncode
    assert f"argument --day: '{day}' is before 1970-01-01" in res.stderr
    assert "internal error" not in res.stderr and "Overflow" not in res.stderr


# ---- a full state directory: a real tmpfs of 64 KiB (needs root to mount)


@pytest.fixture
def tiny_state(env: Env) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    env.state.mkdir(mode=0o750, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0750", "tmpfs", str(env.state)], check=True
    )
    try:
        yield env.state
    finally:
        subprocess.run(["umount", str(env.state)], check=True)


def fill(directory: Path, leave: int = 0) -> None:
    """Fill the file system of `directory`, then give back `leave` bytes (tmpfs counts
    whole pages)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))


def test_full_state_directory_names_the_lock_file(env: Env, tiny_state: Path) -> None:
    """With no byte left, `scan` stops at the lock file's pid, in one sentence naming it."""
    fill(tiny_state)
    res = env.scan(check=False)
    assert 1 == res.returncode
    (line,) = own_lines(res.stderr)
    assert f"mlsd: {tiny_state / 'mlsd.lock'}: cannot write the lock file: No space left" in line
    assert "internal error" not in res.stderr


def test_full_state_directory_names_the_checkpoint(env: Env, tiny_state: Path) -> None:
    """With a page left (the lock's), the checkpoint write fails and says so, naming it; no
    temporary file is left behind."""
    fill(tiny_state, leave=4096)
    res = env.scan(check=False)
    assert 1 == res.returncode
    (line,) = own_lines(res.stderr)
    assert f"mlsd: {tiny_state / 'checkpoint.json'}: cannot write the checkpoint" in line
    assert "No space left on device" in line
    assert not (tiny_state / "checkpoint.json.tmp").exists()


def test_replace_atomically_names_the_file_on_enospc(tiny_state: Path) -> None:
    """Every state write (checkpoint, coverage, outbox, report state) goes through here: its
    error carries the file name and the temp file is removed."""
    fill(tiny_state)
    with pytest.raises(OSError) as info:
        replace_atomically(tiny_state / "coverage.json", b"x" * 8192)
    assert errno.ENOSPC == info.value.errno
    assert str(tiny_state / ".coverage.json.tmp") == info.value.filename
    assert not (tiny_state / ".coverage.json.tmp").exists()
