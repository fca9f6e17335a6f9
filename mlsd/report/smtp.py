"""Report delivery: an outbox on disk, aiosmtplib, retries with backoff. Nothing lost or faked.

A report is first written to the outbox (state_dir/outbox), then sent. A transient failure
(connection refused, timeout, 4xx) leaves it there with a next-attempt time; it is retried
with exponential backoff until delivered or until `[smtp] retry_hours` have passed. A
permanent failure (5xx) moves it to outbox/failed/ for inspection. Recipients refused one
by one are handled one by one (aiosmtplib does not raise when only some are refused). A
message leaves the outbox only after the server accepted it for every recipient.

The one window left: a crash after the server accepted the message and before the outbox
entry is removed re-sends it on restart (SMTP has no way to ask "did you get it?"). The
Message-ID stays the same, so such a duplicate is recognisable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import aiosmtplib

from mlsd.config import SmtpConfig
from mlsd.durable import fsync_dir, replace_atomically
from mlsd.safefs import SHARED_DIR, check_dir, make_dir, read_file
from mlsd.untrusted import terminal

BACKOFF_FIRST: Final = 60.0
BACKOFF_MAX: Final = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    """One message waiting in the outbox: its envelope and its delivery history."""

    id: str
    sender: str
    recipients: tuple[str, ...]
    created: float
    attempts: int = 0
    next_attempt: float = 0.0
    last_error: str = ""
    refused: dict[str, str] = field(default_factory=dict)
    """Recipients refused for good (5xx), with the server's answer."""
    tag: str = ""
    """What the message is (`report:2026-11-24`): lets the scheduler see a report it
    queued but crashed before recording as sent, so that it is not queued twice."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one delivery attempt did."""

    delivered: tuple[str, ...]
    transient: dict[str, str]
    permanent: dict[str, str]
    error: str = ""

    @property
    def complete(self) -> bool:
        """Nothing is left to retry."""
        return not self.transient


class Outbox:
    """Messages on disk in `directory`: `<id>.eml` (the bytes) and `<id>.json` (the envelope).

    The .json is written last, atomically: its presence is what makes an entry exist, so a
    crash mid-write leaves an orphan .eml that is ignored, never a half message sent.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.failed_dir = directory / "failed"

    def ensure(self) -> None:
        """Create the outbox and `failed/` (0750 whatever the umask); refuse links and
        directories others may write to (StateError)."""
        # Each level with its mode whatever the umask, none a link or someone else's.
        make_dir(self.directory.parent, SHARED_DIR, "state directory", top=True)
        make_dir(self.directory, SHARED_DIR, "outbox")
        make_dir(self.failed_dir, SHARED_DIR, "outbox's failed directory")

    def put(
        self, message: bytes, sender: str, recipients: Sequence[str], now: float, tag: str = ""
    ) -> Entry:
        """Store a message; it is due at once."""
        self.ensure()
        entry = Entry(
            tag=tag,
            id=time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + "-" + uuid.uuid4().hex[:8],
            sender=sender,
            recipients=tuple(recipients),
            created=now,
            next_attempt=now,
        )
        replace_atomically(self.directory / f"{entry.id}.eml", message)
        self._save(entry)
        return entry

    def _save(self, entry: Entry) -> None:
        replace_atomically(self.directory / f"{entry.id}.json", json.dumps(asdict(entry)).encode())

    def entries(self, *, failed: bool = False) -> list[Entry]:
        """Every complete entry, oldest first (those set aside in failed/ with `failed`)."""
        directory = self.failed_dir if failed else self.directory
        if not os.path.lexists(directory):
            return []
        # A link in place of the outbox, or one that others can write to: StateError.
        check_dir(directory, "outbox", follow=False)
        out = []
        for meta in sorted(directory.glob("*.json")):
            try:
                # Only our own regular files: a planted entry (or a link to one) is never read,
                # so never sent.
                data = json.loads(read_file(meta, owned=True))
                data["recipients"] = tuple(data["recipients"])
                out.append(Entry(**data))
            except (OSError, ValueError, TypeError, KeyError):
                continue  # unreadable metadata: left in place for the operator to look at
        return out

    def message(self, entry: Entry) -> bytes:
        """The stored bytes of an entry."""
        return read_file(self.directory / f"{entry.id}.eml", owned=True)

    def due(self, now: float) -> list[Entry]:
        """Entries whose next attempt is at or before `now`."""
        return [e for e in self.entries() if e.next_attempt <= now]

    def next_due(self) -> float | None:
        """When the earliest entry is due, or None when the outbox is empty."""
        times = [e.next_attempt for e in self.entries()]
        return min(times) if times else None

    def remove(self, entry: Entry) -> None:
        """Delivered: the entry leaves the outbox (metadata first: no half entry remains)."""
        (self.directory / f"{entry.id}.json").unlink(missing_ok=True)
        (self.directory / f"{entry.id}.eml").unlink(missing_ok=True)
        fsync_dir(self.directory)

    def update(self, entry: Entry) -> None:
        """Store a changed envelope (fewer recipients) as it is."""
        self._save(entry)

    def defer(self, entry: Entry, error: str, now: float, recipients: Sequence[str]) -> Entry:
        """A transient failure: retry later, with exponential backoff, only `recipients`."""
        attempts = entry.attempts + 1
        delay = min(BACKOFF_FIRST * 2 ** (attempts - 1), BACKOFF_MAX)
        updated = replace(
            entry,
            attempts=attempts,
            next_attempt=now + delay,
            last_error=error,
            recipients=tuple(recipients),
        )
        self._save(updated)
        return updated

    def fail(self, entry: Entry, error: str) -> Path:
        """A permanent failure: move the entry to failed/ and keep it there."""
        self.ensure()
        updated = replace(entry, attempts=entry.attempts + 1, last_error=error)
        replace_atomically(
            self.failed_dir / f"{entry.id}.json", json.dumps(asdict(updated)).encode()
        )
        with contextlib.suppress(FileNotFoundError):  # an entry whose message is missing
            os.replace(self.directory / f"{entry.id}.eml", self.failed_dir / f"{entry.id}.eml")
        (self.directory / f"{entry.id}.json").unlink(missing_ok=True)
        fsync_dir(self.directory)
        return self.failed_dir / f"{entry.id}.eml"


def tls_context(cfg: SmtpConfig) -> ssl.SSLContext | None:
    """The TLS context for `starttls`/`tls`: system CAs, or `ca_file` when set."""
    if cfg.security == "none":
        return None
    ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def send_once(message: bytes, entry: Entry, cfg: SmtpConfig) -> Outcome:
    """One delivery attempt within an overall time bound; classifies every failure."""
    kwargs: dict[str, Any] = {
        "sender": entry.sender,
        "recipients": list(entry.recipients),
        "hostname": cfg.host,
        "port": cfg.port,
        "timeout": cfg.timeout,
        "use_tls": cfg.security == "tls",
        # `none` must not upgrade opportunistically: a local Postfix with a snakeoil
        # certificate would then fail validation and the report would never go out.
        "start_tls": cfg.security == "starttls",
        "tls_context": tls_context(cfg),
    }
    if cfg.username and cfg.password is not None:
        kwargs["username"] = cfg.username
        kwargs["password"] = cfg.password.reveal()
    everyone = dict.fromkeys(entry.recipients, "")
    try:
        refused, _ = await asyncio.wait_for(
            aiosmtplib.send(message, **kwargs), timeout=cfg.timeout * 3
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        transient, permanent = _split({r.recipient: (r.code, r.message) for r in exc.recipients})
        return Outcome((), transient, permanent, "every recipient was refused")
    except aiosmtplib.SMTPResponseException as exc:
        reason = _reply(exc.code, exc.message)
        if 400 <= exc.code < 500:
            return Outcome((), dict.fromkeys(everyone, reason), {}, reason)
        return Outcome((), {}, dict.fromkeys(everyone, reason), reason)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        reason = terminal(f"{exc.__class__.__name__}: {exc}".strip())
        return Outcome((), dict.fromkeys(everyone, reason), {}, reason)
    transient, permanent = _split({r: (resp.code, resp.message) for r, resp in refused.items()})
    delivered = tuple(r for r in entry.recipients if r not in refused)
    return Outcome(delivered, transient, permanent)


def _reply(code: int, message: str) -> str:
    # A server's reply is untrusted text (issue 17, finding 6): ESC and OSC sequences changed
    # the terminal's title through `mlsd status`, and a multi-line reply (aiosmtplib joins the
    # lines with `\n`) forged a line in the console log. Neutralised here, before the outbox
    # stores it and anything prints or logs it.
    return f"{code} {terminal(message)}"


def _split(refused: dict[str, tuple[int, str]]) -> tuple[dict[str, str], dict[str, str]]:
    transient = {r: _reply(c, m) for r, (c, m) in refused.items() if c < 500}
    permanent = {r: _reply(c, m) for r, (c, m) in refused.items() if c >= 500}
    return transient, permanent


@dataclass(frozen=True, slots=True)
class Delivery:
    """What became of one outbox entry after an attempt."""

    entry: Entry
    state: str
    """`delivered`, `retry`, `failed` (permanent or retry time over), or `partial`."""
    detail: str


async def deliver_due(
    outbox: Outbox, cfg: SmtpConfig, now: float, allowed: Sequence[str]
) -> list[Delivery]:
    """Try every due entry once; update the outbox to match what really happened.

    Only to the `allowed` recipients (`[report] to`): an entry for anyone else (planted, or
    queued before a reload changed the list) is not sent to them; with nobody left it is
    set aside in failed/.
    """
    results = []
    wanted = {a.casefold() for a in allowed}
    for due in outbox.due(now):
        entry = due
        others = [r for r in due.recipients if r.casefold() not in wanted]
        if others:
            kept = tuple(r for r in due.recipients if r.casefold() in wanted)
            why = "not in [report] to, not sent to: " + terminal(", ".join(others))
            if not kept:
                path = outbox.fail(due, why)
                results.append(Delivery(due, "failed", f"{why}; kept in {path}"))
                continue
            entry = replace(due, recipients=kept, last_error=why)
            outbox.update(entry)
        try:
            message = outbox.message(entry)
        except OSError as exc:
            # Set aside, not retried: a missing, foreign or linked message never becomes
            # sendable by waiting, and a due entry would be tried (and logged) every tick.
            why = f"cannot read the stored message: {exc.strerror or 'unreadable'}"
            path = outbox.fail(entry, why)
            results.append(Delivery(entry, "failed", f"{why}; kept in {path}"))
            continue
        outcome = await send_once(message, entry, cfg)
        refused = {**entry.refused, **outcome.permanent}
        if outcome.complete:
            if refused:
                path = outbox.fail(replace(entry, refused=refused), "refused: " + _fmt(refused))
                state = "partial" if outcome.delivered else "failed"
                results.append(Delivery(entry, state, f"refused for good, kept in {path}"))
            else:
                outbox.remove(entry)
                results.append(Delivery(entry, "delivered", ", ".join(outcome.delivered)))
            continue
        if now - entry.created >= cfg.retry_hours * 3600:
            path = outbox.fail(replace(entry, refused=refused), "gave up: " + outcome.error)
            results.append(Delivery(entry, "failed", f"retry time over, kept in {path}"))
            continue
        updated = outbox.defer(
            replace(entry, refused=refused),
            outcome.error or _fmt(outcome.transient),
            now,
            list(outcome.transient),
        )
        results.append(Delivery(updated, "retry", outcome.error or _fmt(outcome.transient)))
    return results


def _fmt(reasons: dict[str, str]) -> str:
    return "; ".join(f"{r}: {why}" for r, why in reasons.items())
