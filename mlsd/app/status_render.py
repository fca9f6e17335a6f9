"""`mlsd status` on a terminal: a Status (mlsd.app.status) as lines, most important first.

Every line holds text from outside mlsd, so every line goes through the attacker-text policy.
"""

from __future__ import annotations

from mlsd.app.status import Status
from mlsd.untrusted import terminal


def render(st: Status) -> str:
    """The terminal form, most important first."""
    lines = [f"mlsd: {'healthy' if st.healthy else 'NOT HEALTHY'}  (config {st.config})"]
    if st.running is None:
        lines.append(f"  daemon        cannot tell: {st.running_unknown}")
    else:
        lines.append(
            f"  daemon        running, pid {st.pid}, since {st.since}"
            if st.running
            else "  daemon        not running"
        )
    pos = "not started" if st.offset is None else f"offset {st.offset} in {st.generation or '?'}"
    if "checkpoint" in st.cannot_read:
        pos = "not known (cannot read the checkpoint)"
    behind = "" if st.behind_bytes is None else f", {st.behind_bytes} bytes behind"
    if st.read_until is not None or st.behind_seconds is not None:
        pos = f"read up to the entry of {st.read_until or 'none yet'}"
        behind = "" if st.behind_seconds is None else f", {st.behind_seconds:.0f} s behind"
    lines.append(f"  log           {st.log}: {pos}{behind}")
    if st.committed_at:
        lines.append(f"  last commit   {st.committed_at}")
    lines.append(f"  csv           {st.csv}")
    no_csv = "not known (cannot read the CSV)" if "csv" in st.cannot_read else None
    lines.append(f"  last event    {no_csv or st.last_event or 'none'}")
    source = " (counted in the store)" if st.counted_from == "store" else ""
    lines.append(f"  events today  {no_csv or f'{st.events_today}{source}'}")
    last = st.report_last_queued
    lines.append(
        f"  last report   {last}, {st.report_last_state}" if last else "  last report   none yet"
    )
    lines.append(f"  next report   {st.report_next_due}")
    lines.append(
        f"  outbox        {st.outbox_waiting} waiting, {st.outbox_failed} failed"
        + (f" (last error: {st.outbox_last_error})" if st.outbox_last_error else "")
    )
    if st.gaps_today is not None:
        gaps = f"{st.gaps_today} today, {st.gaps_7_days} in 7 days"
    elif "coverage.json" in st.cannot_read:
        gaps = "not known (cannot read coverage.json)"
    else:
        gaps = "not known (no coverage.json yet)"
    lines.append(f"  gaps          {gaps}")
    if st.store:
        lines.append(f"  store         {st.store}")
    if st.fleet:
        lines.append(f"  fleet         {st.fleet}")
    if st.alerts:
        lines.append(f"  alerts        {st.alerts}")
    for db in st.geoip:
        what = f"{db['type']}, built {db['built']}" if db["state"] == "loaded" else db["state"]
        lines.append(f"  geoip {db['role']:<8}{db['path']}: {what}")
    lines += [f"problem: {p}" for p in st.problems]
    lines += [f"warning: {w}" for w in st.warnings]
    # Each line holds text from outside (an SMTP reply kept in the outbox, paths, the last
    # event): escaped by the attacker-text policy, so none can move the cursor, retitle
    # the terminal or start a line of its own.
    return "\n".join(map(terminal, lines)) + "\n"
