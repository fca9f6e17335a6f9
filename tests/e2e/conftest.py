"""Fixtures of the end-to-end suite: a real Postfix + Dovecot per logging variant.

Skipping policy: without root or without the Debian packages the suite skips with the
reason — unless the environment variable CI is set, where it fails instead, so that CI
can never pass by running nothing. A port of ours already taken by another server is
always a failure (the suite would otherwise test someone else's Postfix).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mailserver import VARIANTS, HarnessError, MailServer, missing_requirements


def unavailable(reason: str) -> None:
    """Skip on a developer machine; fail in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the e2e suite must run, but: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module", params=VARIANTS)
def mail_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MailServer]:
    """A started mail server for one logging variant; stopped afterwards, always.

    Its root is a fresh directory under /tmp, mode 0755: Dovecot's auth process, the
    IMAP process and Postfix's virtual(8) run as unprivileged users and must reach their
    files there, which pytest's 0700 basetemp would forbid. On tear-down the logs, the
    CSV and mlsd's output are copied into pytest's tmp directory for inspection.
    """
    variant: str = request.param
    reason = missing_requirements(variant)
    if reason:
        unavailable(reason)
    if variant == "rsyslog" and os.path.lexists("/dev/log"):
        unavailable(
            "the rsyslog variant needs to own /dev/log, which exists here (a system syslog "
            "daemon or journald): not replacing it"
        )
    root = Path(tempfile.mkdtemp(prefix=f"mlsd-e2e-{variant}-"))
    server = MailServer(root, variant)
    try:
        try:
            server.start()
        except HarnessError as e:
            pytest.fail(str(e), pytrace=False)
        yield server
    finally:
        try:
            server.stop()
        finally:
            keep = tmp_path_factory.mktemp(f"e2e-{variant}")
            for sub in ("log", "mlsd", "logrotate", "vmail", "etc"):
                if (root / sub).exists():
                    shutil.copytree(root / sub, keep / sub, symlinks=True)
            shutil.rmtree(root, ignore_errors=True)
