"""GET /metrics on the daemon's event loop: a minimal HTTP/1.x responder, bounded.

On the loop and not in prometheus_client's `start_http_server` thread: the collector
reads counters the loop mutates (a `Counter` iterated while a batch adds a key raises),
and on the loop a scrape sees them between two batches, consistent. No ASGI server
either (`make_asgi_app` needs one): one GET is all Prometheus sends.

Hostile or slow clients: the request head is capped at HEAD_MAX bytes and must arrive
within TIMEOUT seconds, the answer must be taken within TIMEOUT too, at most CLIENTS
connections are served at once (more are closed at once), and every connection is closed
after one answer. Nothing a client sends is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from mlsd import logs

TIMEOUT: Final = 5.0
"""Seconds a client has to send its request, and to take the answer."""
HEAD_MAX: Final = 8192
"""Bytes a request head (request line and headers) may take."""
CLIENTS: Final = 16
"""Connections served at once; Prometheus needs one per scrape."""
PATH: Final = "/metrics"
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The text format every Prometheus reads (prometheus_client's CONTENT_TYPE_LATEST moved
to 1.0.0 in 0.22; mlsd's names and labels are plain, so the bytes are the same)."""

log = logs.get("mlsd.metrics")


class MetricsServer:
    """`start` binds `host:port` and serves `registry`; `close` stops, bounded."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None
        self._clients = 0

    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(
            self._serve, self.host, self.port, limit=HEAD_MAX, reuse_address=True
        )

    async def close(self) -> None:
        """Stop listening and drop the connections still open."""
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(TimeoutError):
            # Every connection is bounded by TIMEOUT, so this wait is too.
            await asyncio.wait_for(self._server.wait_closed(), TIMEOUT)
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._clients >= CLIENTS:
            writer.close()
            return
        self._clients += 1
        try:
            status, body, kind = await self._answer(reader)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode("ascii")
            writer.write(head + body)
            await asyncio.wait_for(writer.drain(), TIMEOUT)
        except (TimeoutError, OSError):
            pass  # a client gone or too slow: nothing to tell anyone
        finally:
            self._clients -= 1
            writer.close()
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(writer.wait_closed(), TIMEOUT)

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[str, bytes, str]:
        """The status line, body and content type for the request `reader` holds."""
        text = "text/plain; charset=utf-8"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError):
            return "400 Bad Request", b"bad request\n", text
        parts = head.split(b"\r\n", 1)[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return "400 Bad Request", b"bad request\n", text
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if target != PATH.encode():
            return "404 Not Found", b"mlsd serves only /metrics\n", text
        if method != b"GET":
            return "405 Method Not Allowed", b"only GET\n", text
        try:
            body = generate_latest(self.registry)
        except Exception as exc:  # a broken reading must not end the server
            log.error("metrics not collected", error=str(exc))
            return "500 Internal Server Error", b"metrics not collected\n", text
        return "200 OK", body, CONTENT_TYPE
