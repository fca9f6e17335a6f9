"""A real DNS server on loopback for the tests: UDP, stdlib only, answers as it is told.

It answers PTR (and A/AAAA, for forward confirmation) from tables, replies NXDOMAIN for
names it does not know, SERVFAIL for names listed as broken, and says nothing at all for
names (or, with `silent_all`, every query) listed as silent, like a dead resolver. Every
query it receives is counted, so a test can prove that a cached answer sent none.
It runs in its own thread so that it keeps answering while the test's loop is busy.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field

QTYPE = {"A": 1, "PTR": 12, "AAAA": 28}
_NAMES = {v: k for k, v in QTYPE.items()}
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3


def ptr_name(ip: str) -> str:
    """`4.3.2.1.in-addr.arpa` for 1.2.3.4 (no trailing dot, lower case)."""
    return ipaddress.ip_address(ip).reverse_pointer.lower()


def _encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def _decode_question(data: bytes) -> tuple[str, int, int]:
    """(qname, qtype, offset after the question) of a query's first question."""
    pos = 12
    labels: list[str] = []
    while data[pos]:
        n = data[pos]
        labels.append(data[pos + 1 : pos + 1 + n].decode("ascii", "replace"))
        pos += 1 + n
    qtype = struct.unpack_from("!H", data, pos + 1)[0]
    return ".".join(labels).lower(), qtype, pos + 5


@dataclass
class DnsServer:
    """The server's tables (edit them any time) and what it has received."""

    ptr: dict[str, str] = field(default_factory=dict)
    """PTR owner name (see ptr_name) → host name."""
    addresses: dict[str, list[str]] = field(default_factory=dict)
    """Host name → its A and AAAA addresses."""
    silent: set[str] = field(default_factory=set)
    """Names never answered."""
    servfail: set[str] = field(default_factory=set)
    """Names answered with SERVFAIL."""
    silent_all: bool = False
    queries: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(name, type) → how many queries arrived."""
    port: int = 0
    _sock: socket.socket | None = None
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_ptr(self, ip: str, host: str, *, forward: list[str] | None = None) -> None:
        """Give `ip` the PTR `host`; `forward` = the A/AAAA records of `host`."""
        self.ptr[ptr_name(ip)] = host
        if forward is not None:
            self.addresses[host.lower()] = forward

    def count(self, ip_or_name: str, qtype: str = "PTR") -> int:
        """How many `qtype` queries arrived for an IP's PTR name (or for a host name)."""
        try:
            name = ptr_name(ip_or_name)
        except ValueError:
            name = ip_or_name.lower()
        with self._lock:
            return self.queries[(name, qtype)]

    def total(self) -> int:
        """Every query received so far."""
        with self._lock:
            return sum(self.queries.values())

    def start(self) -> DnsServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.05)  # so that stop() is noticed promptly
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="dnskit", daemon=True)
        self._thread.start()
        return self

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, as `[dns] servers` takes it."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop serving and close the socket (bounded wait)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(data)
            if reply is not None:
                self._sock.sendto(reply, peer)

    def _answer(self, data: bytes) -> bytes | None:
        if len(data) < 17:
            return None
        qid, flags = struct.unpack_from("!HH", data, 0)
        qname, qtype, end = _decode_question(data)
        with self._lock:
            self.queries[(qname, _NAMES.get(qtype, str(qtype)))] += 1
        if self.silent_all or qname in self.silent:
            return None
        answers: list[bytes] = []
        rcode = NOERROR
        if qname in self.servfail:
            rcode = SERVFAIL
        elif qtype == QTYPE["PTR"] and qname in self.ptr:
            answers.append(_record(QTYPE["PTR"], _encode_name(self.ptr[qname])))
        elif qtype in (QTYPE["A"], QTYPE["AAAA"]) and qname in self.addresses:
            for addr in self.addresses[qname]:
                ip = ipaddress.ip_address(addr)
                if (ip.version == 4) == (qtype == QTYPE["A"]):
                    answers.append(_record(qtype, ip.packed))
        elif qname not in self.ptr and qname not in self.addresses:
            rcode = NXDOMAIN
        # QR=1, the query's opcode and RD bit, RA=1.
        out_flags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode
        header = struct.pack("!HHHHHH", qid, out_flags, 1, len(answers), 0, 0)
        return header + data[12:end] + b"".join(answers)


def _record(rtype: int, rdata: bytes) -> bytes:
    # Owner name: a pointer to the question at offset 12. TTL 0 keeps c-ares from caching
    # the answer itself, so the tests see mlsd's cache, not the library's.
    return struct.pack("!HHHIH", 0xC00C, rtype, 1, 0, len(rdata)) + rdata
