"""Alerts for the surface tests: a plain one, and the hostile ones of tests/hostile/alerts.jsonl."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlsd import config
from mlsd.alerts import Alert, Observation, Rule
from mlsd.config import SentinelConfig
from mlsd.logins import Kind
from mlsd.sentinel.engine import Sentinel

HOSTILE_FILE = Path(__file__).parent / "hostile" / "alerts.jsonl"
T0 = datetime(2026, 11, 24, 9, 30, 5, tzinfo=UTC)


def plain(n: int = 0, **kw: Any) -> Alert:
    """A benign alert, `n` minutes after T0 (documentation names and addresses)."""
    fields: dict[str, Any] = {
        "rule": Rule.NEW_COUNTRY,
        "user": "alice@example.org",
        "time": T0 + timedelta(minutes=n),
        "server": "mx1",
        "ip": "198.51.100.23",
        "country": "SE",
        "asn": "AS64500",
        "aso": "Example Net AB",
        "headline": "new country SE",
        "evidence": (
            ("usual countries", "DE (212 logins, last 2026-11-23 18:02)"),
            ("usual networks", "AS64496 Example Telecom"),
            ("new", "SE, AS64500 Example Net AB, 198.51.100.23"),
        ),
        "thresholds": (("history_days", "30"), ("min_history_days", "7")),
    }
    fields.update(kw)
    return Alert(**fields)


def hostile_cases() -> list[dict[str, Any]]:
    """The cases of tests/hostile/alerts.jsonl, each with its place in the file (`n`)."""
    lines = [line for line in HOSTILE_FILE.read_text().splitlines() if line.strip()]
    return [json.loads(line) | {"n": n} for n, line in enumerate(lines)]


def hostile(case: dict[str, Any]) -> Alert:
    """The case's alert: a plain one, `n` minutes after T0 (each case its own alert id),
    with the case's fields in place (a value may be `{"repeat": TEXT, "times": N}`)."""
    fields = {k: _value(v) for k, v in case["alert"].items()}
    for key in ("evidence", "thresholds"):
        if key in fields:
            fields[key] = tuple((_value(a), _value(b)) for a, b in fields[key])
    return plain(case.get("n", 0), **fields)


def _value(v: Any) -> Any:
    if isinstance(v, dict):
        return str(v["repeat"]) * int(v["times"])
    return v


def make_cfg(tmp_path: Path, extra: str = "", port: int = 25) -> config.Config:
    """A configuration whose state is under `tmp_path`, mailing through 127.0.0.1:`port`."""
    state = tmp_path / "state"
    state.mkdir(mode=0o750, exist_ok=True)
    text = (
        f"[paths]\nstate_dir = {state}\ncsv = {tmp_path / 'mlsd.csv'}\n"
        f"mail_log = {tmp_path / 'mail.log'}\n"
        "[report]\nto = admin@example.org\nfrom = mlsd@mx1.example.org\ntimezone = UTC\n"
        f"[smtp]\nhost = 127.0.0.1\nport = {port}\ntimeout = 2\n{extra}"
    )
    return config.loads(text, tmp_path / "mlsd.conf")


def readme_alert() -> Alert:
    """The README's example alert ("Sentinel"): what the rules raise for alice, who logged in
    from Germany on two networks for two weeks, then from Sweden (rendered with `[report]
    timezone = Europe/Berlin`)."""
    start = datetime(2026, 11, 10, 7, 58, tzinfo=UTC)
    homes = [
        ("192.0.2.10", "AS64496", "Example Telecom"),
        ("192.0.2.11", "AS64496", "Example Telecom"),
        ("203.0.113.40", "AS64497", "Example Mobile"),
    ]
    history = [
        Observation(
            time=start + timedelta(days=day, hours=3 * k),
            kind=Kind.LOGIN,
            user="alice@example.org",
            ip=ip,
            server="mx1",
            service="imap",
            country="DE",
            asn=asn,
            aso=aso,
        )
        for day in range(14)
        for k, (ip, asn, aso) in enumerate(homes)
    ]
    sentinel = Sentinel(SentinelConfig())
    sentinel.warm(history)
    trigger = Observation(
        time=datetime(2026, 11, 24, 9, 30, 5, tzinfo=UTC),
        kind=Kind.LOGIN,
        user="alice@example.org",
        ip="198.51.100.23",
        server="mx1",
        service="imap",
        country="SE",
        asn="AS64500",
        aso="Example Net AB",
    )
    (alert,) = [a for a in sentinel.observe([trigger]) if a.rule is Rule.NEW_COUNTRY]
    return alert


README_ALERT = readme_alert()
