"""mlsd.durable: atomic replacement, with or without the fsyncs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mlsd.durable import replace_atomically


@pytest.mark.parametrize(("fsync", "syncs"), [(True, 2), (False, 0)])
def test_replace_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool, syncs: int
) -> None:
    """The new bytes, the mode asked for, no temp file left; the file and its directory
    fsynced unless the caller says the file is a cache."""
    calls: list[int] = []
    real = os.fsync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counted)
    path = tmp_path / "entry.json"
    path.write_bytes(b"old")
    replace_atomically(path, b"new", mode=0o600, fsync=fsync)
    assert b"new" == path.read_bytes()
    assert 0o600 == stat.S_IMODE(path.stat().st_mode)
    assert [path] == list(tmp_path.iterdir())
    assert syncs == len(calls)
