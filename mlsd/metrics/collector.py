"""The metric families of one scrape, made from a `Readings` snapshot.

Names follow Prometheus' conventions: `mlsd_` first, base units (seconds, bytes), `_total`
on counters, `_timestamp_seconds` on instants. Labels are closed sets mlsd names (the
reason a line was not recorded) or the service, made safe here; never a user, an IP or a
host name: they are unbounded, attacker-chosen, and personal data.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from mlsd import __version__
from mlsd.alerts import Rule
from mlsd.metrics.readings import Read, Readings

OTHER: Final = "other"
_SAFE_LABEL: Final = re.compile(r"[A-Za-z0-9_.+-]{1,32}")


def service_label(name: str) -> str:
    """A service name as a label value, or `other`: the service comes from the syslog tag,
    which a local user can forge (`logger -t postfix/10.0.0.1/smtpd`), so anything that is
    not a short plain word, or that is an IP address, is not shown."""
    if not _SAFE_LABEL.fullmatch(name):
        return OTHER
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return OTHER


class MlsdCollector(Collector):
    """Reads the daemon's counters at scrape time through `read` (see mlsd.metrics)."""

    def __init__(self, read: Read) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        """One `Readings` snapshot as metric families."""
        r = self._read()
        info = GaugeMetricFamily("mlsd_build_info", "mlsd's version", labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield CounterMetricFamily(
            "mlsd_lines_read_total", "Log lines (or journal entries) read", value=r.lines_read
        )
        events = CounterMetricFamily(
            "mlsd_events_written_total", "Rows written to the CSV, by service", labels=["service"]
        )
        by_label: dict[str, int] = {}
        for service, n in r.events_by_service.items():
            label = service_label(service)
            by_label[label] = by_label.get(label, 0) + n
        for label, n in sorted(by_label.items()):
            events.add_metric([label], n)
        yield events
        skipped = CounterMetricFamily(
            "mlsd_lines_not_recorded_total",
            "Lines that looked like a login attempt but made no row, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(r.not_recorded.items()):
            skipped.add_metric([reason], n)
        yield skipped
        yield CounterMetricFamily(
            "mlsd_gaps_total", "Stretches of the log mlsd could not read", value=r.gaps
        )
        yield CounterMetricFamily(
            "mlsd_reports_delivered_total", "Reports delivered", value=r.reports_delivered
        )
        yield from _gauges(
            (
                "mlsd_last_event_timestamp_seconds",
                "Log time of the newest row written",
                r.last_event,
            ),
            ("mlsd_bytes_behind", "Bytes of the log not read yet (file source)", r.bytes_behind),
            (
                "mlsd_journal_cursor_age_seconds",
                "Seconds since the newest committed journal entry was logged (journal source)",
                r.journal_cursor_age,
            ),
            ("mlsd_outbox_messages", "Messages waiting in the outbox", r.outbox_messages),
            (
                "mlsd_outbox_oldest_message_age_seconds",
                "Seconds the oldest message in the outbox has waited (0: empty)",
                r.outbox_oldest_age,
            ),
            (
                "mlsd_last_report_delivered_timestamp_seconds",
                "When a report was last delivered (absent: none since start)",
                r.last_report_delivered,
            ),
        )
        yield from _sinks(r)
        yield from _alerts(r)


def _alerts(r: Readings) -> Iterator[Metric]:
    """Alerts by rule: every rule has its series (0 included), so a rate() sees the first."""
    if r.alerts_by_rule is None:
        return
    family = CounterMetricFamily(
        "mlsd_alerts", "Possible compromises alerted since start, by rule", labels=["rule"]
    )
    for rule in Rule:
        family.add_metric([rule.value], r.alerts_by_rule.get(rule.value, 0))
    yield family


def _sinks(r: Readings) -> Iterator[Metric]:
    """The store's and the fleet's lag, labelled by sink (two names, never from a log)."""
    if not r.sinks:
        return
    up = GaugeMetricFamily("mlsd_sink_up", "1 while rows are being stored", labels=["sink"])
    nbytes = GaugeMetricFamily(
        "mlsd_sink_bytes_behind", "Committed CSV bytes not stored yet", labels=["sink"]
    )
    rows = GaugeMetricFamily(
        "mlsd_sink_rows_behind", "Committed rows not stored yet", labels=["sink"]
    )
    for name, sink in sorted(r.sinks.items()):
        up.add_metric([name], 1 if sink.up else 0)
        if sink.bytes_behind is not None:
            nbytes.add_metric([name], sink.bytes_behind)
        if sink.rows_behind is not None:
            rows.add_metric([name], sink.rows_behind)
    yield from (up, nbytes, rows)


def _gauges(*specs: tuple[str, str, float | None]) -> Iterator[Metric]:
    """A gauge for each value that is known; an unknown value is absent, never a made-up 0."""
    for name, doc, value in specs:
        if value is not None:
            yield GaugeMetricFamily(name, doc, value=value)


def registry(read: Read, extra: Iterable[Collector] = ()) -> CollectorRegistry:
    """A registry of mlsd's collector and `extra` ones (see mlsd.app.metrics_wiring)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(MlsdCollector(read))
    for collector in extra:
        reg.register(collector)
    return reg
