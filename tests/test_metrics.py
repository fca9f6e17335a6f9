"""`[metrics] listen`: a real `mlsd run` scraped over HTTP, its exposition parsed with
prometheus_client's own parser, the values compared with what was written; the endpoint's
limits against slow and odd clients; the key's errors; off by default."""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlsd import config
from mlsd.alerts import Rule
from mlsd.app import reload
from mlsd.config.schema import Listen
from mlsd.errors import ConfigError
from mlsd.ingest.grammar import Skip
from mlsd.ingest.pipeline import SERVICES, Counters
from mlsd.metrics import collector
from mlsd.metrics.collector import service_label
from mlsd.metrics.readings import Readings, SinkReading
from mlsd.metrics.server import CLIENTS, HEAD_MAX, TIMEOUT
from mlsd.rows import AuthFailure
from tests import smtpkit
from tests.followkit import Env, Writer, logged, now_line, wait_for
from tests.journalkit import JournalEnv, needs_journal

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_text(port: int, path: str = "/metrics") -> tuple[int, str, str]:
    """GET `path`: status, content type, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        res = conn.getresponse()
        return res.status, res.getheader("Content-Type") or "", res.read().decode()
    finally:
        conn.close()


def samples(text: str) -> Samples:
    """Every sample of the exposition: (name, sorted labels) → value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(port: int) -> Samples:
    status, kind, text = scrape_text(port)
    assert status == 200, text
    assert kind.startswith("text/plain; version=0.0.4")
    return samples(text)


def by_label(got: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(k[1])[label]: v for k, v in got.items() if k[0] == name}


def _metrics_env(env: Env, extra: str = "", port: int | None = None) -> int:
    """Configure `env` to serve metrics (on `port`, or a free one); returns the port."""
    port = port or smtpkit.free_port()
    env.extra = f"[report]\ntimezone = UTC\n{extra}[metrics]\nlisten = 127.0.0.1:{port}\n"
    env.write_conf({"rotate_grace": "1.0", "reconcile_interval": "1"})
    return port


def start(env: Env, port: int) -> subprocess.Popen[bytes]:
    """`mlsd run`, once its endpoint listens (it starts after the reader is placed)."""
    proc = env.start()
    wait_for(lambda: _listening(port) or proc.poll() is not None)
    return proc


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    yield e
    e.cleanup()


def _stamp() -> str:
    return datetime.now(UTC).strftime("%b %e %H:%M:%S")


def submission_line(user: str, ip: str) -> bytes:
    return (
        f"{_stamp()} mx postfix/submission/smtpd[4243]: warning: unknown[{ip}]: SASL PLAIN "
        f"authentication failed: UGFzc3dvcmQ6, sasl_username={user}\n"
    ).encode()


def imap_line(user: str, ip: str, why: str = "auth failed, 1 attempts in 2 secs") -> bytes:
    return (
        f"{_stamp()} mx dovecot: imap-login: Disconnected ({why}): user=<{user}>, "
        f"method=PLAIN, rip={ip}, lip=192.0.2.1, TLS\n"
    ).encode()


def forged_tag_line(user: str, ip: str) -> bytes:
    """A Postfix line whose syslog tag names an IP as the service (`logger -t` can)."""
    return (
        f"{_stamp()} mx postfix/10.9.8.7/smtpd[1]: warning: unknown[{ip}]: SASL LOGIN "
        f"authentication failed: UGFzc3dvcmQ6, sasl_username={user}\n"
    ).encode()


NOISE = b"Nov 25 05:00:00 mx postfix/smtpd[4242]: connect from unknown[192.0.2.1]\n"
USERS = ("victim-smtp", "victim-sub", "victim-imap", "victim-forged", "victim-down")
IPS = ("198.51.100.23", "203.0.113.45", "2001:db8::77", "198.51.100.99", "203.0.113.200")


def _csv_services(path: Path) -> Counter[str]:
    with open(path, newline="", encoding="utf-8") as fh:
        return Counter(r["service"] for r in csv.DictReader(fh, delimiter=";"))


def test_scrape_counts_what_was_written_and_shows_no_user_or_ip(env: Env) -> None:
    """Events by service equal the CSV's rows by service, every line is counted once, the
    server-side error under its reason, and no username or IP appears anywhere."""
    port = _metrics_env(env)
    data = (
        now_line(USERS[0], IPS[0]) * 3
        + submission_line(USERS[1], IPS[1]) * 2
        + imap_line(USERS[2], IPS[2])
        + forged_tag_line(USERS[3], IPS[3])
        + imap_line(USERS[4], IPS[4], "auth service reported temporary failure")
        + NOISE * 4
    )
    Writer(env.log).write(data)
    proc = start(env, port)
    env.wait_rows(Counter({USERS[0]: 3, USERS[1]: 2, USERS[2]: 1, USERS[3]: 1}))
    wait_for(lambda: scrape(port)[("mlsd_lines_read_total", ())] == data.count(b"\n"))
    # The event store has every committed row (the fleet is off: no "fleet" sink).
    behind = [("mlsd_sink_bytes_behind", (("sink", s),)) for s in ("store", "store-logins")]
    wait_for(lambda: all(scrape(port).get(key) == 0 for key in behind))

    status, _, text = scrape_text(port)
    assert status == 200
    got = samples(text)
    expected_services = _csv_services(env.csv)
    assert expected_services == Counter({"smtp": 3, "submission": 2, "imap": 1, "10.9.8.7": 1})
    assert by_label(got, "mlsd_events_written_total", "service") == {
        "smtp": 3,
        "submission": 2,
        "imap": 1,
        "other": 1,  # the forged tag's "service" is an IP: never a label
    }
    skipped = by_label(got, "mlsd_lines_not_recorded_total", "reason")
    assert set(skipped) == {s.name.lower() for s in Skip} - {"success"}
    assert skipped["server_error"] == 1
    assert sum(skipped.values()) == 1
    assert got[("mlsd_gaps_total", ())] == 0
    assert by_label(got, "mlsd_sink_up", "sink") == {"store": 1, "store-logins": 1}
    assert by_label(got, "mlsd_sink_bytes_behind", "sink") == {"store": 0, "store-logins": 0}
    assert got[("mlsd_bytes_behind", ())] == 0
    assert got[("mlsd_outbox_messages", ())] == 0
    assert got[("mlsd_outbox_oldest_message_age_seconds", ())] == 0
    assert got[("mlsd_reports_delivered_total", ())] == 0
    assert abs(got[("mlsd_last_event_timestamp_seconds", ())] - time.time()) < 120
    names = {k[0] for k in got}
    # Not known, so absent rather than a made-up 0: no report since start, no journal.
    assert "mlsd_last_report_delivered_timestamp_seconds" not in names
    assert "mlsd_journal_cursor_age_seconds" not in names
    for secret in (*USERS, *IPS, "10.9.8.7", "192.0.2.1", "alice"):
        assert secret not in text, secret

    # More lines: the counters follow at the next scrape, no restart, no reset.
    Writer(env.log).write(now_line("victim-later", "198.51.100.24") * 2)
    wait_for(lambda: by_label(scrape(port), "mlsd_events_written_total", "service")["smtp"] == 5)
    assert env.stop(proc) == 0
    assert "metrics served listen=127.0.0.1:" in env.stderr(proc)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT + 5) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_the_endpoint_answers_odd_clients_and_outlives_slow_ones(env: Env) -> None:
    """Other paths and methods, an oversized or broken request, and clients that send
    nothing: each gets a short answer or is dropped after TIMEOUT, and scrapes go on."""
    port = _metrics_env(env)
    env.log.write_bytes(b"")
    proc = start(env, port)
    assert scrape_text(port, "/")[0] == 404
    assert scrape_text(port, "/metrics/../etc")[0] == 404
    assert _raw(port, b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert _raw(port, b"GET /metrics\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    huge = b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (HEAD_MAX * 2) + b"\r\n\r\n"
    assert _raw(port, huge).startswith(b"HTTP/1.1 400 ")
    # As many silent clients as are served at once: more are turned away, and once the
    # silent ones time out a scrape is served again.
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(CLIENTS)]
    try:
        time.sleep(0.5)
        try:
            turned_away = _raw(port, b"GET /metrics HTTP/1.1\r\n\r\n") == b""
        except ConnectionResetError:  # closed with the request unread: a reset
            turned_away = True
        assert turned_away
        started = time.monotonic()
        for s in silent:
            s.settimeout(TIMEOUT + 5)
            assert s.recv(100) == b""  # dropped after TIMEOUT, unanswered
        assert time.monotonic() - started < TIMEOUT + 3
    finally:
        for s in silent:
            s.close()
    assert ("mlsd_lines_read_total", ()) in scrape(port)
    assert env.stop(proc) == 0


def test_outbox_and_delivered_report(env: Env) -> None:
    """A report that cannot be delivered waits in the outbox (size, age); once a reload
    points at a live relay, the next report is delivered: the count and its timestamp,
    while the first one still waits for its retry time."""
    dead = smtpkit.free_port()
    smtp = "[smtp]\nhost = 127.0.0.1\nport = {}\nsecurity = none\ntimeout = 5\n"
    report = "to = admin@example.org\nfrom = mlsd@example.org\n"
    port = _metrics_env(env, report + smtp.format(dead))
    Writer(env.log).write(now_line(USERS[0], IPS[0]))
    proc = start(env, port)
    env.wait_rows(Counter({USERS[0]: 1}))
    proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: scrape(port)[("mlsd_outbox_messages", ())] == 1)
    first = scrape(port)[("mlsd_outbox_oldest_message_age_seconds", ())]
    time.sleep(1.1)
    assert scrape(port)[("mlsd_outbox_oldest_message_age_seconds", ())] >= first + 1
    assert scrape(port)[("mlsd_reports_delivered_total", ())] == 0

    sink = smtpkit.Sink()
    server = smtpkit.start(sink)
    try:
        _metrics_env(env, report + smtp.format(server.port), port)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reloaded config=" in env.stderr(proc))
        before = time.time()
        proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: scrape(port)[("mlsd_reports_delivered_total", ())] == 1)
        got = scrape(port)
        assert len(sink.messages) == 1
        assert got[("mlsd_outbox_messages", ())] == 1  # the first, until its retry time
        at = got[("mlsd_last_report_delivered_timestamp_seconds", ())]
        assert before <= at <= time.time()
        assert env.stop(proc) == 0
    finally:
        server.stop()


@needs_journal
def test_journal_source_gives_the_cursor_age_not_bytes_behind(tmp_path: Path) -> None:
    """With the journal source: the age of the newest committed entry, and no bytes."""
    env = JournalEnv(tmp_path)
    try:
        port = _metrics_env(env)
        env.journal.seq(range(3))  # stamped an hour ago, one a second
        proc = start(env, port)
        env.wait_rows(Counter(f"seq{s:06d}" for s in range(3)))
        wait_for(lambda: ("mlsd_journal_cursor_age_seconds", ()) in scrape(port))
        got = scrape(port)
        age = got[("mlsd_journal_cursor_age_seconds", ())]
        assert 3600 - 10 < age < 3600 + 120
        assert ("mlsd_bytes_behind", ()) not in got
        assert got[("mlsd_lines_read_total", ())] == 6
        assert by_label(got, "mlsd_events_written_total", "service") == {"smtp": 3}
        assert env.stop(proc) == 0
    finally:
        env.cleanup()


# ---- off by default, and the key's values


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


def _listening_sockets(pid: int) -> set[str]:
    """The TCP sockets in LISTEN state that process `pid` holds (by inode)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    listening = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:
                listening.add(cols[9])
    return listening


def test_off_by_default_nothing_listens(env: Env) -> None:
    """Without [metrics] the daemon holds no listening socket at all."""
    Writer(env.log).write(now_line(USERS[0], IPS[0]))
    proc = env.start()
    env.wait_rows(Counter({USERS[0]: 1}))
    assert config.load(env.conf).metrics.listen is None
    assert _listening_sockets(proc.pid) == set()
    assert "metrics served" not in env.stderr(proc)
    assert env.stop(proc) == 0


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", None),
        ("127.0.0.1:9717", Listen("127.0.0.1", 9717)),
        ("[::1]:9717", Listen("::1", 9717)),
        ("0.0.0.0:1", Listen("0.0.0.0", 1)),  # any address: the admin's choice
    ],
)
def test_listen_values(raw: str, expected: Listen | None, tmp_path: Path) -> None:
    """Accepted values, and how check-config writes them back."""
    cfg = config.loads(f"[metrics]\nlisten = {raw}\n", tmp_path / "mlsd.conf")
    assert expected == cfg.metrics.listen
    assert f"[metrics]\nlisten = {raw}\n" in config.render(cfg)


@pytest.mark.parametrize(
    "raw",
    ["localhost:9717", "127.0.0.1", "9717", "127.0.0.1:0", "127.0.0.1:70000", "::1:9717",
     "[::1]", "127.0.0.1:9717 extra", "256.0.0.1:9717", "http://127.0.0.1:9717"],
)  # fmt: skip
def test_a_bad_listen_names_file_section_and_key(raw: str, tmp_path: Path) -> None:
    """Each refused value is an error naming the file, [metrics] and listen, with the form."""
    path = tmp_path / "mlsd.conf"
    with pytest.raises(ConfigError) as caught:
        config.loads(f"[metrics]\nlisten = {raw}\n", path)
    msg = str(caught.value)
    assert msg.startswith(f"{path}: [metrics] listen = {raw!r}: expected an IP address")
    assert "127.0.0.1:9717" in msg
    assert (caught.value.section, caught.value.key) == ("metrics", "listen")


def test_check_config_refuses_a_bad_listen(env: Env) -> None:
    env.extra = "[metrics]\nlisten = metrics.example.org:9717\n"
    env.write_conf({})
    res = subprocess.run(
        env.cmd("check-config"), capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode != 0
    assert "[metrics] listen = 'metrics.example.org:9717': expected" in res.stderr


@pytest.mark.parametrize(
    ("service", "label"),
    [
        ("smtp", "smtp"),
        ("submission", "submission"),
        ("imap", "imap"),
        ("10.9.8.7", "other"),
        ("2001:db8::1", "other"),
        ("a" * 33, "other"),
        ('evil"}\nmlsd_x 1', "other"),
        ("", "other"),
        ("other", "other"),
    ],
)
def test_service_label(service: str, label: str) -> None:
    """Only short plain words that are not addresses become a label value."""
    assert label == service_label(service)


def test_a_reload_keeps_the_endpoint_and_says_a_restart_is_needed(tmp_path: Path) -> None:
    """The endpoint is bound at start: a changed listen is kept as it was, and logged."""
    path = tmp_path / "mlsd.conf"
    path.write_text("[metrics]\nlisten = 127.0.0.1:9717\n")
    running = config.load(path)
    path.write_text("[metrics]\nlisten = 127.0.0.1:9718\n[log]\nlevel = DEBUG\n")
    with logged() as said:
        got = reload.reread(running)
    assert got.config.metrics.listen == Listen("127.0.0.1", 9717)
    assert got.changed == ("log",)
    assert [s.text for s in said if s.level == "warning"] == [
        "[metrics] listen changed: not applied until a restart (systemctl restart mlsd)"
    ]


# ---- the Grafana dashboard


DASHBOARD = Path(__file__).resolve().parent.parent / "contrib" / "grafana" / "mlsd.json"


def _every_family() -> set[str]:
    """The sample names the collector gives when every reading is known."""
    full = Readings(
        lines_read=1,
        events_by_service={"smtp": 1},
        not_recorded={"server_error": 1},
        gaps=1,
        last_event=1.0,
        bytes_behind=1,
        journal_cursor_age=1.0,
        outbox_messages=1,
        outbox_oldest_age=1.0,
        reports_delivered=1,
        last_report_delivered=1.0,
        sinks={"store": SinkReading(up=True, bytes_behind=1, rows_behind=1)},
        alerts_by_rule={"new_country": 1},
    )
    text = generate_latest(collector.registry(lambda: full)).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def test_the_dashboard_shows_every_metric_and_no_other() -> None:
    """contrib/grafana/mlsd.json is valid JSON, queries only metrics mlsd serves, and has a
    panel for each of them (and its PostgreSQL panel reads the fleet table)."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"] if "expr" in t] + [
        v["definition"] for v in board["templating"]["list"]
    ]
    used = {m for e in exprs for m in re.findall(r"\bmlsd_[a-z_]+", e)}
    assert used == _every_family()
    sql = [t["rawSql"] for p in board["panels"] for t in p["targets"] if "rawSql" in t]
    assert len(sql) == 1 and "FROM mlsd_events" in sql[0] and "GROUP BY" in sql[0]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


def test_events_by_service_keep_at_most_services_names() -> None:
    """A local user forging syslog tags cannot grow the per-service counter without bound:
    names past the first SERVICES count under `other`, and known names go on counting."""
    counters = Counters()
    stamp = datetime.now(UTC)
    event = AuthFailure(stamp, "mx", "smtp", "LOGIN", "", "192.0.2.1", "u", "")
    counters.count_services([event._replace(service=f"s{i}") for i in range(SERVICES + 5)])
    counters.count_services([event, event._replace(service="s0")])
    assert len(counters.by_service) == SERVICES + 1
    assert counters.by_service["other"] == 5 + 1  # smtp came after the cap too
    assert counters.by_service["s0"] == 2


def test_alerts_by_rule_every_rule_has_a_series_and_none_without_the_sentinel() -> None:
    """`mlsd_alerts_total{rule}`: one series per documented rule (0 included, so the
    first alert is an increase), none at all when the sentinel does not run."""

    def samples(r: Readings) -> dict[str, float]:
        text = generate_latest(collector.registry(lambda: r)).decode()
        return {
            s.labels["rule"]: s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "mlsd_alerts_total"
        }

    expected = {rule.value: 0.0 for rule in Rule} | {"new_country": 2.0, "send_burst": 1.0}
    assert expected == samples(Readings(alerts_by_rule={"new_country": 2, "send_burst": 1}))
    assert {} == samples(Readings())
