"""One conditional HTTP download into a temporary file, bounded in size and time.

The standard library's urllib, not an HTTP client package: one GET per file per week needs
no connection pool or async I/O (the daemon runs it in a thread), urllib follows the
redirects MaxMind's and IPinfo's downloads use, speaks HTTPS with the system's CAs, and
keeps the dependency list (and what the shipped unit must load) as it is.

Conditional: the validators of the last file installed from a URL (ETag, Last-Modified)
are sent back, and a 304 means nothing to do. The secret-bearing headers are added as
"unredirected": urllib does not carry them to the host a redirect points at.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from mlsd import __version__
from mlsd.durable import write_all
from mlsd.safefs import create_temp

TIMEOUT: Final = 60.0
"""Seconds a connection or a read may stall before the download is given up."""
CHUNK: Final = 1 << 16


class DownloadFailed(Exception):
    """Why a download gave nothing usable (no secret, no URL query in the message)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Validators:
    """What the server said about the file we have, to ask it "changed since?"."""

    etag: str = ""
    last_modified: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """A download: `path` holds the body (None: 304, not modified) and its validators."""

    path: Path | None
    validators: Validators
    url: str


def fetch(
    url: str,
    into: Path,
    *,
    limit: int,
    headers: dict[str, str],
    since: Validators | None,
) -> Fetched:
    """GET `url` into the new file `into` (created, not through a link); at most `limit`
    bytes. Raises DownloadFailed on any HTTP error, a short body or too large a one."""
    if not url.startswith(("http://", "https://")):
        raise DownloadFailed("not an http(s) URL")
    req = urllib.request.Request(url, headers={"User-Agent": f"mlsd/{__version__}"})  # noqa: S310
    for name, value in headers.items():
        req.add_unredirected_header(name, value)
    if since is not None and since.etag:
        req.add_header("If-None-Match", since.etag)
    if since is not None and since.last_modified:
        req.add_header("If-Modified-Since", since.last_modified)
    try:
        resp = urllib.request.urlopen(req, timeout=TIMEOUT)  # noqa: S310 - http(s) only (keys.py)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 304:
            return Fetched(path=None, validators=since or Validators(), url=url)
        raise DownloadFailed(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadFailed(f"cannot connect: {reason}") from None
    with resp:
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdecimal() and int(length) > limit:
            raise DownloadFailed(
                f"{int(length)} bytes announced, more than the {limit} allowed "
                "([geoip] max_download)"
            )
        got = _copy(resp, into, limit)
        if length is not None and length.isdecimal() and got != int(length):
            _discard(into)
            raise DownloadFailed(f"truncated: {got} of {length} bytes received")
        validators = Validators(
            etag=resp.headers.get("ETag", ""), last_modified=resp.headers.get("Last-Modified", "")
        )
    return Fetched(path=into, validators=validators, url=url)


def _copy(resp: Any, into: Path, limit: int) -> int:
    fd = create_temp(into, 0o600)
    got = 0
    try:
        while chunk := resp.read(CHUNK):
            got += len(chunk)
            if got > limit:
                raise DownloadFailed(
                    f"larger than the {limit} bytes allowed ([geoip] max_download)"
                )
            write_all(fd, chunk)
    except BaseException as exc:
        os.close(fd)
        _discard(into)
        if isinstance(exc, (OSError, ValueError, http.client.HTTPException)):
            raise DownloadFailed(f"download interrupted: {exc.__class__.__name__}") from None
        raise
    os.close(fd)
    return got


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
