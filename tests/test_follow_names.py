"""Rotated logs found by content whatever logrotate names them (issue 15, hole 2).

Each scenario runs the real logrotate with one naming option set: dateext with several
dateformats, `extension .log`, `olddir` (with `[follow] rotated_dir`), and copytruncate,
with mlsd down across the rotation (`mlsd scan` before and after) or following it.
A compression mlsd cannot read (xz, zstd, bzip2) is a gap that says so.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from mlsd import config
from mlsd.errors import ConfigError
from mlsd.ingest.sources.file.follow import Follower
from mlsd.ingest.sources.file.generations import candidate, rotated_siblings
from tests.followkit import Env, Writer, lines, logged, users

# (logrotate options, rotations while down: two only where the name changes each second)
NAMINGS = {
    "dateext-epoch": (("dateext", "dateformat -%Y%m%d-%s"), 2),
    "dateext-dashed-day": (("dateext", "dateformat -%Y-%m-%d"), 1),
    "dateext-hour": (("dateext", "dateformat .%Y%m%d%H"), 1),
    "extension-numbered": (("extension .log",), 2),
    "extension-dateext-gz": (
        ("extension .log", "dateext", "dateformat -%Y%m%d-%s", "compress", "delaycompress"),
        2,
    ),
    "epoch-compress": (("dateext", "dateformat -%Y%m%d-%s", "compress"), 2),
}


def _conf(env: Env, **follow: str) -> None:
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1", **follow})


@pytest.mark.parametrize("method", ["create", "copytruncate"])
@pytest.mark.parametrize("naming", sorted(NAMINGS))
def test_naming_down(env: Env, naming: str, method: str) -> None:
    """mlsd down across one or two rotations in this naming: every line, exactly once."""
    options, rotations = NAMINGS[naming]
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    seq = 10
    for i in range(rotations):
        if i:
            time.sleep(1.1)  # the next name differs by a second
        w.seq(range(seq, seq + 10))
        env.logrotate(method, *options)
        if method == "create":
            w.reopen()
        seq += 10
    w.seq(range(seq, seq + 5))
    res = env.scan()
    assert users(range(seq + 5)) == env.rows(), res.stderr
    assert "gap generation=" not in res.stderr


def test_olddir_down_and_live(env: Env) -> None:
    """logrotate's olddir with compress+delaycompress: found through [follow] rotated_dir,
    mlsd down across two rotations, then following one."""
    old = env.root / "old"
    old.mkdir()
    _conf(env, rotated_dir=str(old))
    opts = ("create", f"olddir {old}", "compress", "delaycompress")
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    w.seq(range(10, 20))
    env.logrotate(*opts)
    w.seq(range(20, 25))  # the writer has not reopened yet
    w.reopen()
    w.seq(range(25, 30))
    env.logrotate(*opts)
    w.reopen()
    w.seq(range(30, 35))
    assert (old / "mail.log.2.gz").exists()
    env.scan()
    assert users(range(35)) == env.rows()
    proc = env.start()
    w.seq(range(35, 40))
    env.wait_rows(users(range(40)))
    env.logrotate(*opts)
    w.seq(range(40, 45))  # to the renamed file, now in olddir
    time.sleep(0.1)
    w.reopen()
    w.seq(range(45, 50))
    env.wait_rows(users(range(50)))
    assert env.stop(proc) == 0
    assert "gap generation=" not in env.all_stderr()


def test_copytruncate_dateext_epoch_while_following(env: Env) -> None:
    """copytruncate with epoch dateext while mlsd follows and lags (SIGSTOP): the rest is
    read from the dated copy (the old code said "truncated in place and no copy found")."""
    w = Writer(env.log)
    proc = env.start()
    w.seq(range(10))
    env.wait_rows(users(range(10)))
    proc.send_signal(signal.SIGSTOP)
    try:
        w.seq(range(10, 20))
        env.logrotate("copytruncate", "dateext", "dateformat -%Y%m%d-%s")
        w.seq(range(20, 30))
    finally:
        proc.send_signal(signal.SIGCONT)
    env.wait_rows(users(range(30)))
    assert env.stop(proc) == 0
    assert "gap generation=" not in env.all_stderr()


@pytest.mark.parametrize(
    ("tool", "ext", "kind"),
    [
        ("/usr/bin/xz", ".xz", "xz"),
        ("/usr/bin/zstd", ".zst", "zstd"),
        ("/bin/bzip2", ".bz2", "bzip2"),
    ],
)
def test_unreadable_compression_is_a_gap_with_its_reason(
    env: Env, tool: str, ext: str, kind: str
) -> None:
    """Down across a rotation compressed with xz/zstd/bzip2 (no delaycompress): the lines
    only present in that file are a gap whose reason says why and what to do; the
    newer lines are all read, nothing twice."""
    if not os.path.exists(tool):
        pytest.skip(f"{tool} is not installed")
    w = Writer(env.log)
    w.seq(range(10))
    env.scan()
    w.seq(range(10, 20))
    opts = ["create", "compress", f"compresscmd {tool}", f"compressext {ext}"]
    if kind == "zstd":
        opts.append("compressoptions -q --rm")
    env.logrotate(*opts)
    w.reopen()
    w.seq(range(20, 30))
    assert (env.logdir / f"mail.log.1{ext}").exists()
    res = env.scan()
    assert f"compressed with {kind}, which mlsd cannot read" in res.stderr, res.stderr
    assert "set logrotate's compresscmd to gzip or use delaycompress" in res.stderr
    assert users([*range(10), *range(20, 30)]) == env.rows()


def test_siblings_by_name_family(tmp_path: Path) -> None:
    """Every name logrotate produces is a candidate; other logs of the directory are not."""
    log = tmp_path / "mail.log"
    log.write_bytes(b"live\n")
    names = [
        "mail.log.1",
        "mail.log-20261204-1796400000",
        "mail.log-2026-12-03.gz",
        "mail.log.2026120316",
        "mail.2.log",
        "mail-20261202.log.gz",
        "mail.log_old",
    ]
    for i, name in enumerate(names):
        body = f"generation {i}\n".encode()
        path = tmp_path / name
        path.write_bytes(gzip.compress(body) if name.endswith(".gz") else body)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    for other in ("mail.err", "mail.err.1", "mail.warn.1", "maillog.1", "mail.logfile", "x.log.1"):
        (tmp_path / other).write_bytes(b"other\n")
    assert names == [c.path.name for c in rotated_siblings(log)]


def test_compression_told_by_magic_not_name(tmp_path: Path) -> None:
    """A rotated file is what its first bytes say: xz in `mail.log.2` is xz, gzip in a file
    without `.gz` is read as gzip, bzip2 is named as such."""
    body = lines(range(3))
    (tmp_path / "mail.log.2").write_bytes(lzma.compress(body))
    (tmp_path / "mail.log.3").write_bytes(gzip.compress(body))
    (tmp_path / "mail.log.4.gz").write_bytes(bz2.compress(body))
    xz, gz, bz = (candidate(tmp_path / f"mail.log.{n}", rotated=True) for n in (2, 3, "4.gz"))
    assert xz is not None and gz is not None and bz is not None
    assert ("xz", b"", False) == (xz.packed, xz.head, xz.gz)
    assert (None, body, True) == (gz.packed, gz.head, gz.gz)
    assert "bzip2" == bz.packed


def test_compressing_twin_counts_once(tmp_path: Path) -> None:
    """logrotate compressing with xz right now: `mail.log.1` and `mail.log.1.xz` are one
    generation, the readable one."""
    (tmp_path / "mail.log.1").write_bytes(b"same\n")
    (tmp_path / "mail.log.1.xz").write_bytes(lzma.compress(b"same\n"))
    for p in tmp_path.iterdir():
        os.utime(p, (1_000_000, 1_000_000))
    assert ["mail.log.1"] == [c.path.name for c in rotated_siblings(tmp_path / "mail.log")]


def test_real_logrotate_names_are_what_the_families_cover(tmp_path: Path) -> None:
    """The names asserted above are the ones logrotate 3.21 really writes."""
    env = Env(tmp_path)
    Writer(env.log).seq(range(1))
    env.logrotate("create", "extension .log", "dateext", "dateformat -%Y%m%d-%s", "compress")
    made = [p.name for p in env.logdir.iterdir() if p.name != "mail.log"]
    assert 1 == len(made)
    assert made[0].startswith("mail-") and made[0].endswith(".log.gz"), made
    assert [made[0]] == [c.path.name for c in rotated_siblings(env.log)]


def test_import_rotated_says_what_it_cannot_read(tmp_path: Path) -> None:
    """First start with import_rotated: an xz generation older than the readable ones is a
    gap with its reason (chaos seed 0: it was skipped without a word), the rest is read."""
    log = tmp_path / "mail.log"
    (tmp_path / "mail.log.3.xz").write_bytes(lzma.compress(lines(range(5))))
    (tmp_path / "mail.log.2.gz").write_bytes(gzip.compress(lines(range(5, 10))))
    (tmp_path / "mail.log.1").write_bytes(lines(range(10, 15)))
    for age, name in enumerate(("mail.log.1", "mail.log.2.gz", "mail.log.3.xz")):
        os.utime(tmp_path / name, (1_000_000 - age, 1_000_000 - age))
    Writer(log).seq(range(15, 20))
    f = Follower(log, grace=0.01)
    with logged() as said:
        f.start(None, start_at="beginning", import_rotated=True)
        data = b""
        while (batch := f.next_batch()) is not None or f.wake_at is not None:
            data += batch.data if batch is not None else b""
            if batch is None:
                time.sleep(0.02)
    gaps = [s.text for s in said if s.text.startswith("gap generation=")]
    assert 1 == len(gaps), gaps
    assert "mail.log.3.xz" in gaps[0] and "compressed with xz" in gaps[0]
    assert users(range(5, 20)) == Counter(
        w[14:].decode() for w in data.split() if w.startswith(b"sasl_username=")
    )


def test_gz_damaged_in_its_head_is_a_gap(tmp_path: Path) -> None:
    """A rotated .gz cut so short that its head does not decompress sits between the
    generation being read and the live log: a gap naming it (chaos F6: it was invisible)."""
    log = tmp_path / "mail.log"
    w = Writer(log)
    w.seq(range(5))
    f = Follower(log, grace=0.01)
    f.start(None, start_at="beginning", import_rotated=False)
    assert f.next_batch() is not None
    log.rename(tmp_path / "mail.log.2")
    w.seq(range(5, 7))  # late lines through the old descriptor
    damaged = tmp_path / "mail.log.1.gz"
    damaged.write_bytes(gzip.compress(lines(range(100, 110)))[:20])
    w.reopen()
    w.seq(range(10, 15))
    old = time.time() - 10
    os.utime(tmp_path / "mail.log.2", (old, old))
    os.utime(damaged, (old + 1, old + 1))
    data = b""
    with logged() as said:
        for _ in range(100):
            batch = f.next_batch()
            if batch is None and f.wake_at is None:
                break
            data += batch.data if batch is not None else b""
            time.sleep(0.02 if batch is None else 0)
    gaps = [s.text for s in said if s.text.startswith("gap generation=")]
    assert 1 == len(gaps), gaps
    assert "mail.log.1.gz" in gaps[0] and "damaged or cut-short gzip file" in gaps[0]
    assert users([*range(5, 7), *range(10, 15)]) == Counter(
        w_[14:].decode() for w_ in data.split() if w_.startswith(b"sasl_username=")
    )


def test_rotated_dir_config_key(tmp_path: Path) -> None:
    """`[follow] rotated_dir`: a relative path is taken from the config file's directory;
    a path that is a file is refused naming the section and key."""
    conf = tmp_path / "mlsd.conf"
    conf.write_text("[follow]\nrotated_dir = old\n")
    assert tmp_path / "old" == config.load(conf).follow.rotated_dir
    assert config.Config().follow.rotated_dir is None
    (tmp_path / "afile").write_text("")
    conf.write_text("[follow]\nrotated_dir = afile\n")
    with pytest.raises(ConfigError, match=r"\[follow\] rotated_dir"):
        config.load(conf)
