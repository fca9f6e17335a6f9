"""The config file: every error names file, section and key; secrets never show."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path

import pytest

from mlsd import config
from mlsd.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "mlsd.conf.example"


def load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "mlsd.conf"
    path.write_text(text)
    return config.load(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return str(info.value)


def test_empty_file_gives_the_documented_defaults(tmp_path: Path) -> None:
    """An empty file is valid and yields the defaults."""
    cfg = load(tmp_path, "")
    assert (Path("/var/log/mail.log"), "iso", "postfix", time(0, 15)) == (
        cfg.paths.mail_log,
        cfg.csv.date_format,
        cfg.dns.reverse,
        cfg.report.time,
    )


def test_example_file_is_valid_and_documents_every_key() -> None:
    """mlsd.conf.example parses, and mentions every key of every section."""
    config.load(EXAMPLE)
    text = EXAMPLE.read_text()
    for section, keys in config.sections().items():
        assert f"[{section}]" in text
        for key in keys:
            assert re.search(rf"^(# )?{key} =", text, re.MULTILINE), f"[{section}] {key}"


def test_example_defaults_match_the_code(tmp_path: Path) -> None:
    """The defaults written (commented out) in the example are the defaults the code uses."""
    uncommented = re.sub(r"^# (\w+ =)", r"\1", EXAMPLE.read_text(), flags=re.MULTILINE)
    cfg = load(tmp_path, uncommented)
    assert config.render(config.Config()).strip() == config.render(cfg).split("\n", 1)[1].strip()


def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    """A typo is an error naming file, section and key, with a suggestion."""
    msg = error(tmp_path, "[paths]\nmail_lgo = /x\n")
    assert (
        f"{tmp_path / 'mlsd.conf'}: [paths] unknown key 'mail_lgo': did you mean 'mail_log'?" == msg
    )


def test_unknown_section_suggests_the_nearest(tmp_path: Path) -> None:
    """An unknown section is an error with a suggestion."""
    msg = error(tmp_path, "[reprot]\ntime = 01:00\n")
    assert msg.endswith("unknown section [reprot]: did you mean 'report'?")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[report]\ntime = 25:00\n", "[report] time = '25:00': expected a time of day as HH:MM"),
        ("[smtp]\nport = 0\n", "[smtp] port = '0': expected a whole number from 1 to 65535"),
        (
            "[smtp]\nsecurity = ssl\n",
            "[smtp] security = 'ssl': expected one of: none, starttls, tls",
        ),
        ("[report]\ntimezone = Mars/Base\n", "[report] timezone = 'Mars/Base': expected an IANA"),
        ("[report]\nto = root\n", "[report] to = 'root': expected e-mail addresses"),
        ("[log]\nlevel = LOUD\n", "[log] level = 'LOUD': expected one of: DEBUG"),
        ("[smtp]\ntimeout = nan\n", "[smtp] timeout = 'nan': expected a number of seconds"),
        (
            "[csv]\ndate_format = us\n",
            "[csv] date_format = 'us': expected one of: iso, maillogsentinel",
        ),
        ("[paths]\ncsv =\n", "[paths] csv = '': expected a file path"),
    ],
)
def test_bad_value_names_section_key_value_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    """Each bad value is reported with its section, key, the value and what is expected."""
    msg = error(tmp_path, text)
    assert msg.startswith(str(tmp_path / "mlsd.conf") + ": ")
    assert expected in msg


def test_percent_is_just_a_character(tmp_path: Path) -> None:
    """Interpolation is off: `%` in a value is kept as is."""
    cfg = load(tmp_path, "[report]\nsubject_prefix = [100%% mail] %(x)s\n")
    assert "[100%% mail] %(x)s" == cfg.report.subject_prefix


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    """`csv = var/x.csv` in /etc/mlsd/mlsd.conf means /etc/mlsd/var/x.csv, whatever the cwd."""
    cfg = load(tmp_path, "[paths]\ncsv = var/x.csv\n")
    assert tmp_path / "var" / "x.csv" == cfg.paths.csv


def test_missing_file_says_so(tmp_path: Path) -> None:
    """A missing config file is a clear error with what to do."""
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.conf")


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    """A key set twice is an error, not last-one-wins."""
    assert "[log] level: set twice" in error(tmp_path, "[log]\nlevel = INFO\nlevel = DEBUG\n")


def test_password_file_is_read_and_never_shown(tmp_path: Path) -> None:
    """The secret is read from password_file, and neither repr nor render shows it."""
    secret = tmp_path / "smtp.secret"
    secret.write_text("hunter2-s3cret\n")
    cfg = load(
        tmp_path,
        f"[smtp]\nhost = smtp.example.org\nsecurity = starttls\nusername = mlsd\n"
        f"password_file = {secret}\n",
    )
    assert cfg.smtp.password is not None
    assert "hunter2-s3cret" == cfg.smtp.password.reveal()
    for shown in (repr(cfg), str(cfg), config.render(cfg)):
        assert "hunter2" not in shown
    assert "password = ***" in config.render(cfg)


def test_inline_password_never_appears_in_an_error(tmp_path: Path) -> None:
    """Even a config error about the password does not print it."""
    msg = error(tmp_path, "[smtp]\nhost = smtp.example.org\npassword = hunter2\n")
    assert "hunter2" not in msg
    assert "no username" in msg


def test_password_over_cleartext_to_a_remote_host_is_refused(tmp_path: Path) -> None:
    """security = none with a password to another host would leak it: refused."""
    msg = error(
        tmp_path, "[smtp]\nhost = smtp.example.org\nusername = u\npassword = p\nsecurity = none\n"
    )
    assert "[smtp] security = none would send the password in clear text" in msg


def test_unreadable_password_file(tmp_path: Path) -> None:
    """A missing password_file names the key and the path."""
    msg = error(tmp_path, "[smtp]\nusername = u\nsecurity = tls\npassword_file = /nonexistent/x\n")
    assert "[smtp] password_file = '/nonexistent/x': cannot read it" in msg


def test_recipients_are_a_list(tmp_path: Path) -> None:
    """`to` takes several addresses."""
    cfg = load(tmp_path, "[report]\nto = a@example.org, b@example.org\n")
    assert ("a@example.org", "b@example.org") == cfg.report.to


def test_journal_source_keys(tmp_path: Path) -> None:
    """`[source] type = journal` with a directory and matches; the defaults otherwise."""
    cfg = load(tmp_path, "[paths]\n")
    assert cfg.source.kind == "file"
    assert cfg.source.journal_directory is None
    assert "_SYSTEMD_UNIT=postfix@*.service" in cfg.source.journal_match
    cfg = load(
        tmp_path,
        "[source]\ntype = journal\njournal_directory = jdir\n"
        "journal_match = _SYSTEMD_UNIT=postfix.service, SYSLOG_IDENTIFIER=dovecot\n",
    )
    assert cfg.source.kind == "journal"
    assert cfg.source.journal_directory == tmp_path / "jdir"
    assert cfg.source.journal_match == (
        "_SYSTEMD_UNIT=postfix.service",
        "SYSLOG_IDENTIFIER=dovecot",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[source]\ntype = socket\n", "[source] type = 'socket': expected one of: file, journal"),
        ("[source]\njournal_match = postfix\n", "[source] journal_match = 'postfix': expected"),
        ("[source]\njournal_match = unit=x\n", "[source] journal_match = 'unit=x': expected"),
        ("[source]\njournal_mach = X=y\n", "[source] unknown key 'journal_mach': did you mean"),
    ],
)
def test_journal_source_errors(tmp_path: Path, text: str, expected: str) -> None:
    """A bad journal key is an error naming file, section and key."""
    assert expected in error(tmp_path, text)


def test_journal_directory_must_be_a_directory(tmp_path: Path) -> None:
    """A journal_directory that is a file is refused at load, naming the key."""
    (tmp_path / "x.journal").write_bytes(b"")
    msg = error(tmp_path, f"[source]\njournal_directory = {tmp_path / 'x.journal'}\n")
    assert "[source] journal_directory = " in msg and "not a directory" in msg
