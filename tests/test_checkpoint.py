"""The state directory: torn checkpoint and CSV tails, mismatches, the lock, the config keys."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from mlsd import config
from mlsd.errors import ConfigError, StateError
from mlsd.ingest.checkpoint import Checkpoint, CheckpointStore, GenerationId, StateLock
from tests.followkit import Env, Writer, users


def _cp(offset: int = 10) -> Checkpoint:
    gen = GenerationId(dev=1, ino=2, head_len=3, head_sha256="ab")
    return Checkpoint(
        source="/var/log/mail.log",
        generation=gen,
        offset=offset,
        csv_dev=4,
        csv_ino=5,
        csv_length=6,
        committed_at=7.5,
    )


def test_checkpoint_round_trip_and_atomic_replace(tmp_path: Path) -> None:
    """What is saved is what is loaded; no temp file is left behind."""
    store = CheckpointStore(tmp_path)
    assert store.load() is None
    store.save(_cp(10))
    store.save(_cp(20))
    assert _cp(20) == store.load()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json"]
    pinned = Checkpoint(
        source="/l", generation=None, offset=0, csv_dev=1, csv_ino=2, csv_length=3, committed_at=0
    )
    store.save(pinned)  # before the first batch: the CSV pinned, no generation yet
    assert pinned == store.load()
    assert "sealed" not in (tmp_path / "checkpoint.json").read_text()  # only when set
    sealed = GenerationId(dev=1, ino=9, head_len=1024, head_sha256="cd", prefix_sha256="ef")
    with_sealed = dataclasses.replace(_cp(30), sealed=(sealed,))
    store.save(with_sealed)
    assert with_sealed == store.load()


@pytest.mark.parametrize(
    "sealed", ['"x"', '[{"dev": -1, "ino": 2, "head_len": 3, "head_sha256": "ab"}]', "[3]"]
)
def test_a_damaged_sealed_list_is_a_damaged_checkpoint(tmp_path: Path, sealed: str) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_cp(10))
    path = tmp_path / "checkpoint.json"
    text = path.read_text().replace('"committed_at"', f'"sealed": {sealed},\n "committed_at"')
    path.write_text(text)
    with pytest.raises(StateError, match="checkpoint is damaged"):
        store.load()


def test_torn_temp_file_is_ignored(env: Env) -> None:
    """A crash while writing the temp file leaves the previous checkpoint in force."""
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    (env.state / "checkpoint.json.tmp").write_bytes(b'{"version": 1, "sour')
    w.seq(range(10, 15))
    env.scan()
    assert users(range(15)) == env.rows()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"version": 1, "sour', "checkpoint is damaged"),
        (b'{"version": 99}', "checkpoint version 99"),
        (b"[]", "checkpoint is damaged"),
    ],
)
def test_damaged_checkpoint_is_loud(env: Env, content: bytes, message: str) -> None:
    """A damaged checkpoint is never guessed around: exit 1 with a specific message."""
    Writer(env.log).seq(range(3))
    env.scan()
    (env.state / "checkpoint.json").write_bytes(content)
    res = env.scan(check=False)
    assert res.returncode == 1
    assert message in res.stderr


def test_torn_csv_tail_is_cut_back(env: Env) -> None:
    """Half a row after the committed length (kill -9 mid-write) is cut off at start."""
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    with open(env.csv, "ab") as fh:
        fh.write(b"srv;2026-11-25T05:00:00+00:00;10.0.0.1;seq0000")
    w.seq(range(10, 15))
    res = env.scan()
    assert "csv cut back" in res.stderr
    assert users(range(15)) == env.rows()


def test_rows_without_checkpoint_are_produced_again(env: Env) -> None:
    """Crash after the CSV fsync but before the checkpoint: the rows are cut back and
    written again from the log, once."""
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    saved = env.state / "saved.json"
    shutil.copy(env.state / "checkpoint.json", saved)
    w.seq(range(10, 20))
    env.scan()
    os.replace(saved, env.state / "checkpoint.json")  # as if the second commit never landed
    env.scan()
    assert users(range(20)) == env.rows()


def test_csv_shorter_than_checkpoint_is_loud(env: Env) -> None:
    """Rows removed behind mlsd's back: refuse, never continue silently."""
    Writer(env.log).seq(range(10))
    env.scan()
    size = env.csv.stat().st_size
    os.truncate(env.csv, size - 10)
    res = env.scan(check=False)
    assert res.returncode == 1
    assert "the checkpoint says" in res.stderr


def test_other_csv_is_loud(env: Env) -> None:
    """Another file with rows in the CSV's place: refuse."""
    Writer(env.log).seq(range(10))
    env.scan()
    other = env.csv.with_suffix(".other")
    shutil.copy(env.csv, other)
    os.replace(other, env.csv)
    res = env.scan(check=False)
    assert res.returncode == 1
    assert "not the CSV the checkpoint was written with" in res.stderr


def test_csv_moved_away_starts_new_csv(env: Env) -> None:
    """The operator moved the CSV aside: a new one continues from the checkpoint."""
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    env.csv.rename(env.csv.with_suffix(".old"))
    w.seq(range(10, 15))
    res = env.scan()
    assert "csv is new" in res.stderr
    assert users(range(10, 15)) == env.rows()


def test_rows_but_no_checkpoint_is_loud(env: Env) -> None:
    """A CSV with rows and no checkpoint: mlsd cannot tell where they came from."""
    Writer(env.log).seq(range(5))
    env.scan()
    (env.state / "checkpoint.json").unlink()
    res = env.scan(check=False)
    assert res.returncode == 1
    assert "does not exist" in res.stderr


def test_checkpoint_for_another_log_is_loud(env: Env) -> None:
    """A state directory used for another mail_log is refused."""
    Writer(env.log).seq(range(5))
    env.scan()
    text = (env.state / "checkpoint.json").read_text()
    (env.state / "checkpoint.json").write_text(text.replace(str(env.log), "/elsewhere.log"))
    res = env.scan(check=False)
    assert res.returncode == 1
    assert "the checkpoint is for /elsewhere.log" in res.stderr


def test_lock_names_holder(tmp_path: Path) -> None:
    """The second holder is refused with the first one's pid; released, it can be taken."""
    a, b = StateLock(tmp_path), StateLock(tmp_path)
    a.acquire()
    with pytest.raises(StateError, match=f"pid {os.getpid()}"):
        b.acquire()
    a.release()
    b.acquire()
    b.release()


def test_follow_config_keys(tmp_path: Path) -> None:
    """[follow] keys, their defaults, and an error naming the key."""
    assert config.FollowConfig() == config.Config().follow
    assert config.Config().follow.start_at == "beginning"
    assert config.Config().follow.import_rotated is False
    cfg = config.loads(
        "[follow]\nstart_at = end\nimport_rotated = yes\nreconcile_interval = 2\n"
        "rotate_grace = 0.5\n",
        tmp_path / "x.conf",
    )
    expected = config.FollowConfig(
        start_at="end", import_rotated=True, reconcile_interval=2.0, rotate_grace=0.5
    )
    assert expected == cfg.follow
    with pytest.raises(ConfigError, match=r"\[follow\] start_at = 'middle'"):
        config.loads("[follow]\nstart_at = middle\n", tmp_path / "x.conf")


def test_disk_full_stops_loudly_and_resumes_exactly(tmp_path: Path) -> None:
    """CSV and state on a 64 KiB tmpfs: when it fills, `mlsd run` stops with exit 1 and a
    clear message; after space is freed, a restart loses and repeats nothing."""
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        # mode=0755: a fresh tmpfs is 1777, a directory mlsd refuses to write in.
        ["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", str(small)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        env = Env(tmp_path)
        env.csv = small / "mlsd.csv"
        env.state = small / "state"
        env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
        w = Writer(env.log)
        proc = env.start()
        w.seq(range(1000))  # ~100 bytes a row: more than 64 KiB of CSV
        assert proc.wait(timeout=60) == 1
        err = env.stderr(proc)
        assert "No space left on device; stopping so that no row is lost or repeated" in err
        subprocess.run(["mount", "-o", "remount,size=4m", str(small)], check=True)
        proc = env.start()
        env.wait_rows(users(range(1000)))
        assert env.stop(proc) == 0
    finally:
        env.cleanup()
        subprocess.run(["umount", "-l", str(small)], check=False)
