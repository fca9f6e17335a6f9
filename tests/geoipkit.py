"""A GeoIP download server on loopback for the updater's tests: routes of canned bodies,
ETag answers, and the requests it saw (no test touches the internet)."""

from __future__ import annotations

import gzip
import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

DATA = Path(__file__).parent / "data" / "geoip"
COUNTRY = (DATA / "GeoLite2-Country-Test.mmdb").read_bytes()
ASN = (DATA / "GeoLite2-ASN-Test.mmdb").read_bytes()
BUILD = 1770245369
"""The test databases' build_epoch."""


def with_build(mmdb: bytes, epoch: int) -> bytes:
    """The database with another build date (the metadata's 4-byte uint64, patched)."""
    marker = b"build_epoch\x04\x02"
    at = mmdb.rindex(marker) + len(marker)
    assert int.from_bytes(mmdb[at : at + 4], "big") == BUILD
    return mmdb[:at] + epoch.to_bytes(4, "big") + mmdb[at + 4 :]


def tar_gz(name: str, data: bytes, suffix: str = ".mmdb") -> bytes:
    """What MaxMind ships: GeoLite2-X_YYYYMMDD/GeoLite2-X.mmdb in a gzipped tar."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{name}_20260101/COPYRIGHT.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"(c)"))
        info = tarfile.TarInfo(f"{name}_20260101/{name}{suffix}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data)


@dataclass
class Route:
    """One URL path's answer."""

    body: bytes
    etag: str = ""
    status: int = 200
    location: str = ""
    """With a 3xx status: where the redirect points (MaxMind's goes to a storage host)."""
    chunked: bool = False
    """No Content-Length: the body's end is the connection's (what a proxy may do)."""
    cut_at: int | None = None
    """Announce the whole length, send only this many bytes, close: a dropped connection."""


@dataclass
class Server:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def hits(self, path: str) -> int:
        return sum(1 for p, _ in self.seen if p.split("?")[0] == path)


@contextmanager
def serve() -> Iterator[Server]:
    """A threaded HTTP server on 127.0.0.1; `server.routes` says what each path returns."""
    state = Server(base="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.seen.append((self.path, dict(self.headers.items())))
            route = state.routes.get(self.path.split("?")[0])
            if route is None:
                self.send_error(404)
                return
            if route.etag and self.headers.get("If-None-Match") == route.etag:
                self.send_response(304)
                self.end_headers()
                return
            if route.location:
                self.send_response(route.status)
                self.send_header("Location", state.base + route.location)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if route.status != 200:
                self.send_error(route.status)
                return
            self.send_response(200)
            if route.chunked:
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(route.body)))
            if route.etag:
                self.send_header("ETag", route.etag)
            self.end_headers()
            body = route.body if route.cut_at is None else route.body[: route.cut_at]
            self.wfile.write(body)
            if route.cut_at is not None:
                self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
