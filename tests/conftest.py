"""Fixtures shared by the follower tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.followkit import Env
from tests.pgkit import pg_cluster, pg_db  # noqa: F401 - fixtures: one cluster per session


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    """A fresh installation in tmp_path: log dir, state dir, CSV path; daemons stopped after."""
    e = Env(tmp_path)
    yield e
    e.cleanup()
