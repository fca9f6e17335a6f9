"""Generation identity and the order of rotated siblings, as pure file-system facts."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from mlsd.ingest.checkpoint import GenerationId, fingerprint
from mlsd.ingest.sources.file.generations import DAMAGED_GZIP, candidate, matches, rotated_siblings


def _write(path: Path, text: str, mtime: float | None = None) -> None:
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as fh:
            fh.write(text.encode())
    else:
        path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_sibling_order_numbered_and_gz(tmp_path: Path) -> None:
    """Numbered names with equal mtimes: the highest number is the oldest."""
    log = tmp_path / "mail.log"
    for name in ("mail.log.1", "mail.log.3.gz", "mail.log.2.gz", "mail.log.10.gz"):
        _write(tmp_path / name, name + "\n", mtime=1_000_000)
    for other in ("mail.logx.1", "mail.err.1", "mail.log", "mail.err", "mailxlog.1"):
        _write(tmp_path / other, other + "\n")
    names = [c.path.name for c in rotated_siblings(log)]
    assert ["mail.log.10.gz", "mail.log.3.gz", "mail.log.2.gz", "mail.log.1"] == names


def test_sibling_order_dated_and_postfix(tmp_path: Path) -> None:
    """dateext and `postfix logrotate` names with equal mtimes sort by their date."""
    log = tmp_path / "mail.log"
    for name in (
        "mail.log-20261125.gz",
        "mail.log-20261124",
        "mail.log.20261125-041200.gz",
        "mail.log.20261123-235959.gz",
    ):
        _write(tmp_path / name, name + "\n", mtime=1_000_000)
    names = [c.path.name for c in rotated_siblings(log)]
    assert [
        "mail.log.20261123-235959.gz",
        "mail.log-20261124",
        "mail.log-20261125.gz",
        "mail.log.20261125-041200.gz",
    ] == names


def test_mtime_order_beats_names_after_a_compress_change(tmp_path: Path) -> None:
    """Enabling compress leaves logrotate's names out of order (mail.log.2 older than
    mail.log.3.gz): the last-write times give the true order."""
    for name, t in (
        ("mail.log.2", 1),
        ("mail.log.3.gz", 2),
        ("mail.log.2.gz", 3),
        ("mail.log.1", 4),
    ):
        _write(tmp_path / name, name + "\n", mtime=1_000_000 + t)
    names = [c.path.name for c in rotated_siblings(tmp_path / "mail.log")]
    assert ["mail.log.2", "mail.log.3.gz", "mail.log.2.gz", "mail.log.1"] == names


def test_plain_and_gz_twin_count_once(tmp_path: Path) -> None:
    """logrotate compressing right now: mail.log.1 and mail.log.1.gz are one generation."""
    _write(tmp_path / "mail.log.1", "same\n", mtime=1_000_000)
    _write(tmp_path / "mail.log.1.gz", "same\n", mtime=1_000_000)
    assert ["mail.log.1"] == [c.path.name for c in rotated_siblings(tmp_path / "mail.log")]


def test_head_identity_survives_compression(tmp_path: Path) -> None:
    """A generation is recognised by its decompressed head, whatever its inode."""
    plain = tmp_path / "mail.log"
    _write(plain, "line one\nline two\n")
    c = candidate(plain)
    assert c is not None
    gen = GenerationId(dev=c.dev, ino=c.ino, head_len=len(c.head), head_sha256=fingerprint(c.head))
    _write(tmp_path / "mail.log.1.gz", "line one\nline two\nand more\n")
    gz = candidate(tmp_path / "mail.log.1.gz")
    assert gz is not None
    assert gz.gz
    assert matches(gz, gen)
    _write(tmp_path / "other", "line one\nline 2\n")
    other = candidate(tmp_path / "other")
    assert other is not None
    assert not matches(other, gen)


def test_damaged_gz_is_listed_as_unreadable(tmp_path: Path) -> None:
    """A .gz cut short in its first KiB cannot be told by content: it is listed as
    unreadable (its loss is then a gap), unless its plain twin is there (compressing now)."""
    path = tmp_path / "mail.log.2.gz"
    _write(path, "x" * 5000)
    os.truncate(path, 12)
    got = candidate(path, rotated=True)
    assert got is not None
    assert (DAMAGED_GZIP, b"") == (got.packed, got.head)
    assert [path] == [c.path for c in rotated_siblings(tmp_path / "mail.log")]
    _write(tmp_path / "mail.log.2", "x" * 5000)
    assert ["mail.log.2"] == [c.path.name for c in rotated_siblings(tmp_path / "mail.log")]
