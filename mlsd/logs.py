"""Logging: structlog on top of stdlib logging, one renderer picked once at start-up.

Library records (asyncio, aiosmtplib, pyinotify) go through the same handler, so the
journal shows one format. Under journald (JOURNAL_STREAM names our stderr) a record is one
line: a `<N>` syslog priority prefix, the event, key=value fields, no timestamp (journald
adds it), a traceback folded into the line. On a terminal: structlog's console format.
`format = json`: one JSON object per line. Every string is escaped by mlsd.untrusted's log
rule (usernames in log lines, SMTP replies are chosen by attackers) and secrets are masked.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import replace
from typing import Any, Final, Literal, TextIO

import structlog
from structlog.dev import Column, KeyValueColumnFormatter

from mlsd.config import LogFormat, LogLevel, Secret
from mlsd.untrusted import log_value

_PRIORITY: Final = {
    "critical": 2,
    "error": 3,
    "warning": 4,
    "info": 6,
    "debug": 7,
}
_SECRET_KEYS: Final = frozenset({"password", "secret", "passwd", "token", "auth_password"})
_NEEDS_QUOTES = re.compile(r"[\s\"=]")

Format = LogFormat | Literal["console_plain"]
"""[log] format, or what `auto` picks off a terminal: the console format without colours."""


def under_journald(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Whether `stream` is journald's: JOURNAL_STREAM holds its `device:inode`."""
    env = os.environ if env is None else env
    want = env.get("JOURNAL_STREAM", "")
    if not want:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


def sanitize(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets, escape every string by mlsd.untrusted's log rule
    (a field's value can never end the line or hide text: newlines, ESC, bidi, U+2028…)."""
    for key, value in event.items():
        if isinstance(value, Secret) or key.lower() in _SECRET_KEYS:
            event[key] = "***"
        elif isinstance(value, str):
            event[key] = log_value(key, value)
    return event


def _kv(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    if text == "" or _NEEDS_QUOTES.search(text):
        return json.dumps(text, ensure_ascii=False)
    return text


class JournalRenderer:
    """`<6>event key=value …`: one line per record, for journald."""

    def __call__(self, _: Any, method: str, event: MutableMapping[str, Any]) -> str:
        prio = _PRIORITY.get(event.pop("level", method), 6)
        text = str(event.pop("event", ""))
        event.pop("timestamp", None)
        exc = event.pop("exception", None)
        parts = [f"<{prio}>{text}"]
        parts.extend(f"{k}={_kv(v)}" for k, v in event.items())
        if exc:
            # journald splits on newlines: fold the traceback into this record's line.
            parts.append("exception=" + json.dumps(str(exc), ensure_ascii=False))
        return " ".join(parts).replace("\n", "\\n")


def configure(
    level: LogLevel = "INFO", fmt: Format = "auto", stream: TextIO | None = None
) -> Format:
    """Set up structlog and stdlib logging; returns the format chosen (journal/console/json).

    Safe to call again (SIGHUP): handlers are replaced, not stacked.
    """
    stream = sys.stderr if stream is None else stream
    if fmt == "auto":
        if under_journald(stream):
            fmt = "journal"
        elif stream.isatty():
            fmt = "console"
        else:
            fmt = "console_plain"
    renderer: Any
    pre: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
    ]
    if fmt == "journal":
        renderer = JournalRenderer()
        pre.append(structlog.processors.format_exc_info)
    elif fmt == "json":
        pre.append(structlog.processors.TimeStamper(fmt="iso", utc=True))
        pre.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        pre.append(structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S", utc=False))
        # Colours only on a terminal, even for an explicit `format = console`: in a file
        # or a pipe the escapes are noise (and `less` shows them as ESC[…).
        renderer = _console(colors=fmt == "console" and _isatty(stream))
    pre.append(sanitize)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # pyinotify installs its own stderr handler at import: ours is the only one.
    pyinotify_log = logging.getLogger("pyinotify")
    for old in list(pyinotify_log.handlers):
        pyinotify_log.removeHandler(old)
    pyinotify_log.propagate = True

    structlog.configure(
        processors=[*pre, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    return "console" if fmt == "console_plain" else fmt


def _console(*, colors: bool) -> structlog.dev.ConsoleRenderer:
    """structlog's console format in the journal's line shape: the event, then its fields in
    the order the call gives them and quoted as the journal quotes them, the logger last
    (`logger=…`). So `gap generation=… unread_from=… reason="…"` reads (and greps) the
    same on a terminal, in a file and in the journal."""
    renderer = structlog.dev.ConsoleRenderer(colors=colors, sort_keys=False, pad_event_to=0)
    columns = []
    for column in renderer.columns:
        if column.key in ("logger", "logger_name"):
            continue  # its column sits between the event and the fields: a field instead
        fmt = column.formatter
        if not column.key and isinstance(fmt, KeyValueColumnFormatter):
            fmt = replace(fmt, value_repr=_kv)  # the fields' column: quoted as in the journal
        columns.append(Column(column.key, fmt))
    renderer.columns = columns
    return renderer


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        return False


def get(name: str) -> Any:
    """A structlog logger named `name` (e.g. `mlsd.follow`)."""
    return structlog.stdlib.get_logger(name)
