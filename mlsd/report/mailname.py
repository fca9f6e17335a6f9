"""This machine's name as mail knows it: the domain of the report's default sender.

`mlsd@vm` (the short host name) is not an address a remote MTA accepts or a reader can
reply to. The best name is the one the local Postfix uses for itself (`myhostname`, which
its own mail already carries), then the resolver's fully qualified name; the short name
only when neither is a qualified name.
"""

from __future__ import annotations

import re
import socket
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

MAIN_CF: Final = Path("/etc/postfix/main.cf")
POSTCONF: Final = ("postconf", "-h", "myhostname")
_TIMEOUT: Final = 3.0
"""Seconds `postconf` may take (it reads main.cf and exits; a hang must not hold a report)."""

_LABEL: Final = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_NAME: Final = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)+{_LABEL}")
_SETTING: Final = re.compile(r"^\s*myhostname\s*=\s*(\S+)\s*$", re.MULTILINE)


def qualified(name: str) -> bool:
    """Whether `name` is a dotted host name that is not a loopback alias."""
    first = name.split(".", 1)[0].lower()
    return bool(_NAME.fullmatch(name)) and first not in ("localhost", "localhost4", "localhost6")


def mail_hostname(
    short: str,
    *,
    postconf: Sequence[str] = POSTCONF,
    main_cf: Path = MAIN_CF,
    fqdn: Callable[[], str] = socket.getfqdn,
) -> str:
    """Postfix's `myhostname`, else the FQDN, else `short`: the first that is qualified."""
    sources: tuple[Callable[[], str], ...] = (
        lambda: _from_postconf(postconf),
        lambda: _from_main_cf(main_cf),
        fqdn,
    )
    for source in sources:
        name = source().strip().rstrip(".")
        if qualified(name):
            return name
    return short


def _from_postconf(cmd: Sequence[str]) -> str:
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _from_main_cf(path: Path) -> str:
    """`myhostname = …` as written (postconf missing or failing); a value with `$` is an
    expansion this reader does not do: skipped."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    found = _SETTING.findall(text)
    return found[-1] if found and "$" not in found[-1] else ""
