"""Log output: journald lines with priorities, one line per record, no secret, no escape codes."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from mlsd import logs
from mlsd.config import Secret

SECRET = "hunter2-Sup3r-s3cret"  # noqa: S105 - the test hunts for this string


@pytest.fixture
def journal_stream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TextIO]:
    """A file standing for journald's stream: JOURNAL_STREAM names its device:inode."""
    with open(tmp_path / "journal", "w+", encoding="utf-8") as fh:
        st = os.fstat(fh.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        yield fh
    logging.getLogger().handlers.clear()


def lines(fh: TextIO) -> list[str]:
    fh.flush()
    fh.seek(0)
    return fh.read().splitlines()


def test_journal_format_is_chosen_and_has_priorities(journal_stream: TextIO) -> None:
    """Under journald: `<N>` prefixes, key=value fields, no timestamp, one line each."""
    assert "journal" == logs.configure("DEBUG", "auto", journal_stream)
    log = logs.get("mlsd.test")
    log.info("mlsd started", version="0.1.0", source="/var/log/mail.log")
    log.warning("gap in coverage", lost_bytes=120)
    log.debug("line skipped", reason="server-side error")
    logging.getLogger("aiosmtplib").error("library record")
    assert [
        "<6>mlsd started version=0.1.0 source=/var/log/mail.log logger=mlsd.test",
        "<4>gap in coverage lost_bytes=120 logger=mlsd.test",
        '<7>line skipped reason="server-side error" logger=mlsd.test',
        "<3>library record logger=aiosmtplib",
    ] == lines(journal_stream)


def test_traceback_is_folded_into_one_line(journal_stream: TextIO) -> None:
    """An exception's traceback stays in its record's single line."""
    logs.configure("INFO", "journal", journal_stream)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logs.get("mlsd.test").exception("send failed")
    (line,) = lines(journal_stream)
    assert line.startswith("<3>send failed logger=mlsd.test exception=")
    assert "Traceback" in line and "RuntimeError: boom" in line


def test_attacker_text_cannot_inject_lines_or_escapes(journal_stream: TextIO) -> None:
    """A username with newlines and ANSI escapes stays one harmless line."""
    logs.configure("INFO", "journal", journal_stream)
    logs.get("mlsd.test").info("event", user="x\n<0>fake emergency\x1b[2J")
    (line,) = lines(journal_stream)
    assert "\x1b" not in line and line.startswith("<6>event user=")


@pytest.mark.parametrize("fmt", ["journal", "json", "console"])
def test_secrets_never_reach_the_log(journal_stream: TextIO, fmt: logs.Format) -> None:
    """Neither the password nor its base64 (as in AUTH PLAIN) appears, whatever the format."""
    logs.configure("DEBUG", fmt, journal_stream)
    log = logs.get("mlsd.test")
    log.info("smtp login", password=SECRET, secret=Secret(SECRET), cfg=repr(Secret(SECRET)))
    logging.getLogger("mlsd.test").info("stdlib %s", Secret(SECRET))
    text = "\n".join(lines(journal_stream))
    for leak in (
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),
        base64.b64encode(f"\0u\0{SECRET}".encode()).decode(),
    ):
        assert leak not in text
    assert "***" in text


def test_json_format_is_one_object_per_line(journal_stream: TextIO) -> None:
    """format = json: each line parses as JSON with event, level and timestamp."""
    logs.configure("INFO", "json", journal_stream)
    logs.get("mlsd.test").info("mlsd started", version="0.1.0")
    (line,) = lines(journal_stream)
    obj = json.loads(line)
    assert ("mlsd started", "info", "0.1.0") == (obj["event"], obj["level"], obj["version"])
    assert "timestamp" in obj


def test_pyinotify_handler_is_removed(journal_stream: TextIO) -> None:
    """pyinotify's own stderr handler is replaced by ours."""
    import pyinotify  # noqa: F401 - importing installs its handler

    logs.configure("INFO", "journal", journal_stream)
    assert [] == logging.getLogger("pyinotify").handlers
    logging.getLogger("pyinotify").error("queue overflow")
    assert ["<3>queue overflow logger=pyinotify"] == lines(journal_stream)


def test_reconfigure_does_not_stack_handlers(journal_stream: TextIO) -> None:
    """Calling configure again (SIGHUP) keeps one handler: no doubled lines."""
    logs.configure("INFO", "journal", journal_stream)
    logs.configure("DEBUG", "journal", journal_stream)
    logs.get("mlsd.test").debug("after reload")
    assert ["<7>after reload logger=mlsd.test"] == lines(journal_stream)
