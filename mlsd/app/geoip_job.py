"""The daemon's GeoIP update schedule: `[geoip] update`, every `update_interval_days`.

The run itself (HTTP, unpacking, verifying: seconds of blocking work) is in a daemon
thread, so the event loop keeps following the log and a shutdown never waits for a
download; a download cut short leaves only a temporary file, which the next run replaces.
The installed file is picked up by `Geo.maybe_reload` like any atomic replacement. Each
failure is logged once: the same reason again on a retry is logged at debug level.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from typing import Final

from mlsd import logs
from mlsd.config import Config
from mlsd.enrich.geoupdate.updater import Outcome, next_due, read_state, update
from mlsd.errors import MlsdError

log = logs.get("mlsd.geoip")

IDLE_CHECK: Final = 3600.0
"""Seconds between looks at the config while `[geoip] update` is off (a reload may set it)."""
_tasks: set[asyncio.Task[None]] = set()


def start(config: Callable[[], Config]) -> asyncio.Task[None]:
    """Start the schedule on the running loop; `config()` gives the current (reloaded) one."""
    task = asyncio.get_running_loop().create_task(_schedule(config))
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


async def _schedule(config: Callable[[], Config]) -> None:
    last: dict[str, str] = {}
    while True:
        cfg = config()
        if not cfg.geoip.update:
            await asyncio.sleep(IDLE_CHECK)
            continue
        state = read_state(cfg.paths.state_dir)
        checked = state.get("checked")
        due = next_due(
            checked if isinstance(checked, (int, float)) else None,
            bool(state.get("ok", False)),
            cfg.geoip.update_interval_days,
            time.time(),
        )
        if due > time.time():
            await asyncio.sleep(min(due - time.time(), IDLE_CHECK))
            continue
        log.info("geoip update starting", provider=cfg.geoip.provider)
        try:
            outcomes = await _in_thread(functools.partial(update, cfg))
        except MlsdError as exc:
            _once(last, "config", "geoip update not possible", reason=str(exc))
            await asyncio.sleep(IDLE_CHECK)
            continue
        except Exception as exc:  # a bug must not end the schedule, nor the daemon
            log.exception("geoip update crashed", error=str(exc))
            await asyncio.sleep(IDLE_CHECK)
            continue
        for o in outcomes:
            _report(o, last)


def _report(o: Outcome, last: dict[str, str]) -> None:
    if o.status == "failed":
        _once(
            last,
            str(o.path),
            "geoip update failed, installed file kept",
            role=o.role,
            path=str(o.path),
            reason=o.detail,
            url=o.source,
        )
        return
    last.pop(str(o.path), None)
    log.info(
        "geoip database " + o.status.replace("-", " "), role=o.role, path=str(o.path), db=o.detail
    )


def _once(last: dict[str, str], key: str, event: str, **fields: str) -> None:
    reason = fields.get("reason", "")
    if last.get(key) == reason:
        log.debug(event + " (again)", **fields)
        return
    last[key] = reason
    log.warning(event, **fields)


async def _in_thread(work: Callable[[], list[Outcome]]) -> list[Outcome]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Outcome]] = loop.create_future()

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the loop, which decides
            loop.call_soon_threadsafe(_settle, done, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, done, result, None)

    threading.Thread(target=run, name="mlsd-geoip-update", daemon=True).start()
    return await done


def _settle(
    fut: asyncio.Future[list[Outcome]], result: list[Outcome] | None, exc: BaseException | None
) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result or [])
