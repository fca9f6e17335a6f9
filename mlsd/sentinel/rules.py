"""The four rules' alerts: headline, evidence and thresholds, built from the engine's state.

The engine (mlsd.sentinel.engine) decides *whether* a rule fires; this module says *what
the admin reads*: enough to dismiss a VPN or a new phone in seconds, or to act. Every
value is a plain string in a fixed order, so the same input gives the same alert (and the
alert journal's deduplication by id stays meaningful). Usernames, organisations and IPs
here came from log lines: they are kept raw and each surface cleans them (mlsd.untrusted).

Times are shown in UTC, the zone the sentinel cuts its days and hours in.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime

from mlsd.alerts import Alert, Observation, Rule
from mlsd.config import SentinelConfig
from mlsd.sentinel.history import DAY, HOUR, UserHistory
from mlsd.sentinel.windows import Tally

TOP = 5
"""Items named in a list of evidence before `+N more`."""

Pairs = tuple[tuple[str, str], ...]


def when(time: float) -> str:
    """A POSIX log time as the evidence shows it."""
    return datetime.fromtimestamp(time, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _day(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")


def _more(shown: list[str], total: int) -> str:
    text = ", ".join(shown)
    return f"{text}, +{total - len(shown)} more" if total > len(shown) else text


def top_counts(counts: Counter[str]) -> str:
    """`a (3), b (2), … +N more`: the most frequent first, ties by name (deterministic)."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return _more([f"{k or '(none)'} ({n})" for k, n in ranked[:TOP]], len(ranked))


def recent(seen: Mapping[str, float], names: Mapping[str, str] | None = None) -> str:
    """`FR (last seen …), …`: the most recently seen first; `none` when empty."""
    if not seen:
        return "none"
    ranked = sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = []
    for key, last in ranked[:TOP]:
        name = names.get(key, "") if names else ""
        label = f"{key} {name}" if name and name != "N/A" else key
        shown.append(f"{label} (last seen {when(last)})")
    return _more(shown, len(ranked))


def _alert(rule: Rule, ob: Observation, headline: str, evidence: Pairs, thresholds: Pairs) -> Alert:
    return Alert(
        rule=rule,
        user=ob.user,
        time=ob.time,
        server=ob.server,
        ip=ob.ip,
        country=ob.country,
        asn=ob.asn,
        aso=ob.aso,
        headline=headline,
        evidence=evidence,
        thresholds=thresholds,
    )


def _login(ob: Observation) -> tuple[str, str]:
    where = " ".join(x for x in (ob.country, ob.asn, ob.aso) if x and x != "N/A")
    service = f"{ob.service} " if ob.service else ""
    return "login", f"{service}from {ob.ip or '(no IP)'}" + (f" ({where})" if where else "")


def _tally(t: Tally) -> str:
    if not t.count or t.first is None or t.last is None:
        return "none"
    text = f"{t.count}, first {when(t.first)}, last {when(t.last)}"
    if t.folded:
        text += f" ({t.folded} of them older, counted without detail)"
    return text


def _within(tally: str, cfg: SentinelConfig) -> str:
    return tally if tally == "none" else f"{tally} (in {cfg.failure_window} min)"


def success_after_failures(
    ob: Observation, cfg: SentinelConfig, by_user: Tally, by_ip: Tally
) -> Alert:
    """A login after `failures` failures for the user, or from the IP, in the window."""
    if by_user.count >= cfg.failures:
        headline = f"{by_user.count} failures then a login"
    else:
        headline = f"{by_ip.count} failures from {ob.ip} then a login"
    evidence: Pairs = (
        _login(ob),
        # Labels of mlsd's own words: the user and the IP are on the alert's User and
        # From lines already, and an attacker's long name must not make a label unreadable.
        ("failures, this user", _within(_tally(by_user), cfg)),
        ("from IPs", f"{len(by_user.others)} distinct: {top_counts(by_user.others)}")
        if by_user.others
        else ("from IPs", "none"),
        ("failures, this IP", _within(_tally(by_ip), cfg)),
        ("users tried from that IP", f"{len(by_ip.others)} distinct: {top_counts(by_ip.others)}")
        if by_ip.others
        else ("users tried from that IP", "none"),
    )
    thresholds: Pairs = (
        ("failures", str(cfg.failures)),
        ("failure_window", str(cfg.failure_window)),
    )
    return _alert(Rule.SUCCESS_AFTER_FAILURES, ob, headline, evidence, thresholds)


def _usual(history: UserHistory) -> Pairs:
    first = history.first_seen()
    since = f" since {when(first)}" if first is not None else ""
    return (
        ("usual countries", recent(history.countries)),
        ("usual networks", recent(history.networks, history.network_names)),
        ("usual IPs", recent(history.ips)),
        ("history", f"{history.logins()} logins{since}"),
    )


def _history_thresholds(cfg: SentinelConfig) -> Pairs:
    return (
        ("history_days", str(cfg.history_days)),
        ("min_history_days", str(cfg.min_history_days)),
        ("min_history_logins", str(cfg.min_history_logins)),
    )


def new_country(ob: Observation, cfg: SentinelConfig, history: UserHistory) -> Alert:
    """A login from a country not in the user's own logins of `history_days`."""
    evidence = (_login(ob), ("new country", ob.country), *_usual(history))
    return _alert(
        Rule.NEW_COUNTRY,
        ob,
        f"new country {ob.country}",
        evidence,
        (("new_country", "yes"), *_history_thresholds(cfg)),
    )


def new_network(ob: Observation, cfg: SentinelConfig, history: UserHistory) -> Alert:
    """A login from a network (ASN) not in the user's own logins of `history_days`."""
    name = f" {ob.aso}" if ob.aso and ob.aso != "N/A" else ""
    evidence = (_login(ob), ("new network", f"{ob.asn}{name}"), *_usual(history))
    return _alert(
        Rule.NEW_NETWORK,
        ob,
        f"new network {ob.asn}",
        evidence,
        (("new_network", "yes"), *_history_thresholds(cfg)),
    )


def many_sources(
    ob: Observation, cfg: SentinelConfig, history: UserHistory, ips: int, countries: int
) -> Alert:
    """`max_ips` distinct IPs or `max_countries` countries in one UTC day."""
    if cfg.max_ips and ips >= cfg.max_ips:
        headline = f"{ips} IPs in a day"
    else:
        headline = f"{countries} countries in a day"
    day_ips = sorted(history.day_ips)
    extra = f" (+{history.day_extra} not itemised)" if history.day_extra else ""
    evidence: Pairs = (
        _login(ob),
        ("day (UTC)", _day(history.today)),
        ("IPs today", f"{ips}: {_more(day_ips[: TOP * 2], len(day_ips))}{extra}"),
        ("countries today", ", ".join(sorted(history.day_countries)) or "none"),
        ("usual countries", recent(history.countries)),
        ("usual networks", recent(history.networks, history.network_names)),
    )
    thresholds: Pairs = (("max_ips", str(cfg.max_ips)), ("max_countries", str(cfg.max_countries)))
    return _alert(Rule.MANY_SOURCES, ob, headline, evidence, thresholds)


def send_burst(ob: Observation, cfg: SentinelConfig, history: UserHistory) -> Alert:
    """Recipients in a UTC clock hour above `send_floor` and `send_multiple` times the high.

    Raised at the submission that crosses both (promptness over a full count): the
    headline's figure is the hour's total at that moment, not at the hour's end."""
    high, high_day = history.high()
    start = history.hour * HOUR
    before = (
        f"{high} recipients in an hour, on {_day(high_day)}"
        if high_day is not None
        else f"none in the last {cfg.history_days} days"
    )
    evidence: Pairs = (
        ("submitted from", f"{ob.ip or '(no IP)'}"),
        (
            "this hour",
            f"{history.hour_sum} recipients in {history.hour_messages} messages since "
            f"{when(start)}",
        ),
        (f"highest hour in {cfg.history_days} days", before),
    )
    thresholds: Pairs = (
        ("send_floor", str(cfg.send_floor)),
        ("send_multiple", f"{cfg.send_multiple:g}"),
        ("history_days", str(cfg.history_days)),
    )
    return _alert(
        Rule.SEND_BURST, ob, f"{history.hour_sum} recipients in an hour", evidence, thresholds
    )
