"""migrate-config: a MailLogSentinel config becomes a valid mlsd config plus notes on the rest."""

from __future__ import annotations

from datetime import time
from pathlib import Path

import pytest

from mlsd import config
from mlsd.app.migrate import Migration, migrate
from mlsd.errors import ConfigError

SHIPPED = Path(__file__).parent / "data" / "maillogsentinel.conf"
TARGET = Path("/etc/mlsd/mlsd.conf")
TIMERS = "(systemd timers maillogsentinel.timer / maillogsentinel-report.timer)"
PREFIX = "[report] report_subject_prefix (not set)"

FULL = """\
[paths]
working_dir = /srv/mls
state_dir = /srv/mls/state
mail_log = /var/log/mail/mail.log
csv_filename = fails.csv

[report]
email = alice@example.org, bob@example.org
report_subject_prefix = [MLS prod]
report_sender_override = sentinel@mx.example.org

[geolocation]
country_db_path = /srv/mls/country_aside.csv
country_db_url = https://raw.githubusercontent.com/ipinfo/data/master/geo/country_aside.csv

[ASN_ASO]
asn_db_path = /srv/mls/asn.csv
asn_db_url = https://raw.githubusercontent.com/ipinfo/data/master/asn/asn.csv

[general]
log_level = CRITICAL
log_file_max_bytes = 1000000
log_file_backup_count = 5

[dns_cache]
enabled = true
size = 512
ttl_seconds = 7200
"""


def settings(m: Migration) -> list[str]:
    return [n.setting for n in m.notes]


def loaded(m: Migration) -> config.Config:
    """The migrated text must be a config mlsd accepts where it is meant to be installed."""
    return config.loads(m.text, TARGET)


def error(text: str, name: str = "/etc/maillogsentinel.conf") -> ConfigError:
    with pytest.raises(ConfigError) as info:
        migrate(text, name)
    return info.value


def test_shipped_example_migrates() -> None:
    """MailLogSentinel's example: mail log, recipient and level carry over; the rest is noted."""
    m = migrate(SHIPPED.read_text(), "/etc/maillogsentinel.conf")
    cfg = loaded(m)
    assert cfg.paths.mail_log == Path("/var/log/mail.log")
    assert cfg.report.to == ("security-team@example.org",)
    assert cfg.log.level == "INFO"
    assert settings(m) == [
        "[paths] working_dir",
        "[paths] state_dir",
        "[geolocation] country_db_path",
        "[ASN_ASO] asn_db_path",
        PREFIX,
        TIMERS,
    ]
    # Absent in the old file: mlsd's defaults, not MailLogSentinel's.
    assert cfg.paths.csv == Path("/var/log/mlsd/mlsd.csv")
    assert cfg.paths.state_dir == Path("/var/lib/mlsd")
    assert cfg.report.subject_prefix == "[mlsd]"
    assert cfg.dns == config.DnsConfig()
    assert cfg.geoip == config.GeoipConfig()
    assert m.notes[2].value == "/var/lib/maillogsentinel/country_aside.csv"
    assert "/var/log/maillogsentinel/maillogsentinel.csv" in m.notes[0].why


def test_output_documents_itself_and_is_deterministic() -> None:
    """Header names the source, each key its origin, the notes close the file; no date."""
    m = migrate(SHIPPED.read_text(), "/etc/maillogsentinel.conf")
    assert m.text.startswith(
        "# mlsd configuration generated from /etc/maillogsentinel.conf by `mlsd migrate-config`."
    )
    assert "# from [report] email\nto = security-team@example.org\n" in m.text
    assert "# from [general] log_level\nlevel = INFO\n" in m.text
    tail = m.text[m.text.index("# MailLogSentinel settings with no equivalent") :]
    assert all(line.startswith("#") for line in tail.splitlines())
    for n in m.notes:
        assert n.setting in tail
    assert m == migrate(SHIPPED.read_text(), "/etc/maillogsentinel.conf")
    # mlsd's section order, whatever the old file's.
    order = [line for line in m.text.splitlines() if line.startswith("[")]
    assert order == ["[paths]", "[geoip]", "[dns]", "[report]", "[log]"]


def test_every_key_set() -> None:
    """Every MailLogSentinel key: exact values in mlsd, exact notes, in file order."""
    m = migrate(FULL, "old.conf")
    cfg = loaded(m)
    assert cfg.paths == config.PathsConfig(mail_log=Path("/var/log/mail/mail.log"))
    assert cfg.report == config.ReportConfig(
        to=("alice@example.org", "bob@example.org"),
        sender="sentinel@mx.example.org",
        subject_prefix="[MLS prod]",
    )
    assert cfg.log == config.LogConfig(level="ERROR")
    assert cfg.dns == config.DnsConfig(reverse="postfix", cache_size=512, cache_ttl=7200.0)
    assert cfg.geoip == config.GeoipConfig()
    assert cfg.report.time == time(0, 15)
    assert settings(m) == [
        "[paths] working_dir",
        "[paths] state_dir",
        "[paths] csv_filename",
        "[geolocation] country_db_path",
        "[geolocation] country_db_url",
        "[ASN_ASO] asn_db_path",
        "[ASN_ASO] asn_db_url",
        "[general] log_level",
        "[general] log_file_max_bytes",
        "[general] log_file_backup_count",
        "[dns_cache] enabled",
        TIMERS,
    ]
    assert "/srv/mls/fails.csv" in m.notes[0].why
    assert m.notes[7].value == "CRITICAL"
    assert "ERROR" in m.notes[7].why
    assert "# from [report] report_sender_override\nfrom = sentinel@mx.example.org\n" in m.text


def test_empty_file_gives_defaults_and_the_timers_note() -> None:
    m = migrate("", "old.conf")
    assert loaded(m).report == config.ReportConfig()
    assert settings(m) == [PREFIX, TIMERS]


@pytest.mark.parametrize(
    "text",
    [
        "this is not an ini file\n",
        "[paths]\nmail_log = /a\nmail_log = /b\n",
        "[paths]\n[paths]\n",
        "[paths]\njust words\n",
    ],
)
def test_not_ini_names_the_file(text: str) -> None:
    exc = error(text, "/etc/maillogsentinel/odd.conf")
    assert str(exc).startswith("/etc/maillogsentinel/odd.conf: ")
    assert exc.path == Path("/etc/maillogsentinel/odd.conf")


def test_unknown_sections_and_keys_are_notes() -> None:
    """Timer keys of some versions, typos, [DEFAULT]: listed, not errors."""
    text = (
        "[timer]\nextract = hourly\n[general]\nlog_level = DEBUG\nlog_levle = INFO\n"
        "[empty]\n[DEFAULT]\nfoo = bar\n[report]\n"
    )
    m = migrate(text, "old.conf")
    assert loaded(m).log.level == "DEBUG"
    assert [(n.setting, n.value) for n in m.notes] == [
        ("[timer] extract", "hourly"),
        ("[general] log_levle", "INFO"),
        ("[empty]", ""),
        ("[DEFAULT] foo", "bar"),
        (PREFIX, ""),
        (TIMERS, ""),
    ]
    assert m.notes[0].why == "no equivalent: unknown to MailLogSentinel's documented settings"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("email", "security-team"),
        ("email", "a@example.org; b@example.org"),
        ("report_sender_override", "me"),
    ],
)
def test_invalid_report_address_is_an_error(key: str, value: str) -> None:
    """A recipient dropped would lose every report: the admin has to fix the old file."""
    exc = error(f"[report]\n{key} = {value}\n", "/etc/maillogsentinel.conf")
    assert str(exc).startswith(f"/etc/maillogsentinel.conf: [report] {key} = {value!r}: expected ")
    assert (exc.section, exc.key) == ("report", key)


def test_relative_mail_log_is_an_error() -> None:
    exc = error("[paths]\nmail_log = mail.log\n")
    assert "[paths] mail_log = 'mail.log': expected an absolute path" in str(exc)


def test_multiline_value_is_refused() -> None:
    exc = error("[report]\nemail = a@example.org\n  b@example.org\n")
    assert "[report] email: the value spans several lines" in str(exc)
    assert (exc.section, exc.key) == ("report", "email")


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ("[dns_cache]\nsize = 0\n", "[dns_cache] size"),
        ("[dns_cache]\nsize = lots\n", "[dns_cache] size"),
        ("[dns_cache]\nttl_seconds = -1\n", "[dns_cache] ttl_seconds"),
        ("[dns_cache]\nttl_seconds = nan\n", "[dns_cache] ttl_seconds"),
        ("[general]\nlog_level = VERBOSE\n", "[general] log_level"),
    ],
)
def test_tuning_values_mlsd_refuses_fall_back_to_defaults(text: str, note: str) -> None:
    m = migrate(text, "old.conf")
    cfg = loaded(m)
    assert (cfg.dns, cfg.log) == (config.DnsConfig(), config.LogConfig())
    assert settings(m) == [note, PREFIX, TIMERS]
    assert "must be" in m.notes[0].why


def test_values_are_literal() -> None:
    """`%` is a character in both tools; lower-case levels and empty values are fine."""
    text = (
        "[report]\nemail = a%b@example.org\nreport_subject_prefix = [%(host)s] 100%\n"
        "report_sender_override =\n[general]\nlog_level = warning\n"
        "[paths]\nmail_log =\n"
    )
    cfg = loaded(migrate(text, "old.conf"))
    assert cfg.report.to == ("a%b@example.org",)
    assert cfg.report.subject_prefix == "[%(host)s] 100%"
    assert cfg.report.sender == ""
    assert cfg.log.level == "WARNING"
    assert cfg.paths.mail_log == Path("/var/log/mail.log")


def test_source_name_cannot_break_the_header() -> None:
    m = migrate("", "evil\n[smtp]\nhost = attacker.example")
    assert loaded(m).smtp == config.SmtpConfig()
