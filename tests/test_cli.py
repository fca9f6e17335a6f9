"""`mlsd parse`, `mlsd check-config` and `mlsd --version` as a user runs them: real processes."""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import pytest

from mlsd import __version__
from mlsd.app.cli import (  # imported before fork: the dropped child cannot read /root
    build_parser,
    main,
)
from mlsd.app.onecommand import command_of

CORPUS = Path(__file__).parent / "corpus"
MLS_LOG = CORPUS / "maillogsentinel" / "sample_sasl.log"
LAB_LOG = CORPUS / "lab" / "postlogd-mail.log"


def mlsd(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "mlsd", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        env={**os.environ, "TZ": "UTC", **(env or {})},
        check=False,
    )


def expected_rows(log: Path) -> Counter[tuple[str, str | None]]:
    exp = log.with_name(log.name.replace(".log", ".expected.jsonl"))
    recs = [json.loads(x) for x in exp.read_text().splitlines()[1:]]
    return Counter((r["ip"], r["user"]) for r in recs if r["expect"] == "row")


def csv_rows(out: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(out.decode()), delimiter=";"))


def test_version() -> None:
    """--version prints the version and exits 0."""
    r = mlsd("--version")
    assert (0, f"mlsd {__version__}\n") == (r.returncode, r.stdout.decode())


def test_parse_csv_gives_exactly_the_annotated_rows() -> None:
    """`mlsd parse` of MailLogSentinel's sample yields its 139 rows, no more, no fewer."""
    r = mlsd("parse", str(MLS_LOG))
    assert 0 == r.returncode, r.stderr
    rows = csv_rows(r.stdout)
    assert expected_rows(MLS_LOG) == Counter((x["ip"], x["user"] or None) for x in rows)
    lines = len(MLS_LOG.read_bytes().splitlines())
    assert f"mlsd: {MLS_LOG}: {lines} lines read, 139 events\n" == r.stderr.decode()


def test_parse_jsonl_keys_and_counts_skips() -> None:
    """jsonl objects carry the documented keys; skipped candidates are counted on stderr."""
    r = mlsd("parse", "--format", "jsonl", str(LAB_LOG))
    assert 0 == r.returncode
    objs = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert expected_rows(LAB_LOG) == Counter((o["ip"], o["user"]) for o in objs)
    assert {"time", "server", "service", "mechanism", "ip", "user", "hostname"} <= set(objs[0])
    assert "; not recorded: 1 (1 mechanism not offered)\n" in r.stderr.decode()


def test_parse_reads_gzip_by_content_and_stdin(tmp_path: Path) -> None:
    """A gzip file (whatever its name) and stdin give the same rows as the plain file."""
    gz = tmp_path / "mail.log.2"  # no .gz suffix on purpose: detected by content
    gz.write_bytes(gzip.compress(MLS_LOG.read_bytes()))
    plain = mlsd("parse", str(MLS_LOG)).stdout
    assert plain == mlsd("parse", str(gz)).stdout
    assert plain == mlsd("parse", "-", stdin=MLS_LOG.read_bytes()).stdout


def test_parse_truncated_gzip_keeps_what_was_read_and_fails(tmp_path: Path) -> None:
    """A cut-short .gz prints the rows before the cut and exits 1 with a clear message."""
    gz = tmp_path / "mail.log.2.gz"
    data = gzip.compress(MLS_LOG.read_bytes() * 300)  # several read blocks
    gz.write_bytes(data[: len(data) // 2])
    r = mlsd("parse", str(gz))
    assert 1 == r.returncode
    assert len(csv_rows(r.stdout)) > 100
    assert f"mlsd: {gz}: read failed after" in r.stderr.decode()


def test_parse_missing_file_fails_with_one_sentence() -> None:
    """A missing file: exit 1, one line on stderr, no traceback; other files still parsed."""
    r = mlsd("parse", "/nonexistent/mail.log", str(MLS_LOG))
    err = r.stderr.decode()
    assert 1 == r.returncode
    assert err.startswith("mlsd: /nonexistent/mail.log: no such file\n")
    assert "Traceback" not in err and 139 == len(csv_rows(r.stdout))


def test_parse_unreadable_file_explains_the_adm_group() -> None:
    """Permission denied names the file and the usual fix (group adm)."""
    top = Path(tempfile.mkdtemp(prefix="mlsd-perm-"))
    top.chmod(0o755)
    log = top / "mail.log"
    log.write_bytes(MLS_LOG.read_bytes())
    log.chmod(0o640)
    # root reads everything: run the CLI in a forked child that dropped to nobody.
    build_parser()  # warms argparse's lazy imports (gettext, locale) before dropping privileges
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            # pytest swaps sys.stderr/stdout for its own objects: give the child real files.
            sys.stderr = os.fdopen(write_fd, "w")
            sys.stdout = open(os.devnull, "w")
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setgroups([])
                os.setuid(65534)
            code = main(["parse", str(log)])
            sys.stderr.flush()
            os._exit(code)
        except BaseException:
            os._exit(99)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        err = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    assert 1 == os.waitstatus_to_exitcode(status)
    assert f"mlsd: {log}: permission denied" in err
    assert "adm group" in err
    shutil.rmtree(top)


def test_check_config_prints_effective_config_masked(tmp_path: Path) -> None:
    """check-config exits 0 and prints every section, the password masked."""
    conf = tmp_path / "mlsd.conf"
    conf.write_text(
        "[smtp]\nhost = smtp.example.org\nsecurity = tls\nusername = u\npassword = hunter2\n"
    )
    r = mlsd("check-config", "-c", str(conf))
    out = r.stdout.decode()
    assert 0 == r.returncode, r.stderr
    assert "password = ***" in out and "hunter2" not in out + r.stderr.decode()
    assert "[paths]" in out and "[log]" in out


def test_check_config_typo_exits_2_with_the_location(tmp_path: Path) -> None:
    """A typo: exit 2, one line naming file, section, key and the suggestion."""
    conf = tmp_path / "mlsd.conf"
    conf.write_text("[report]\ntmie = 01:00\n")
    r = mlsd("check-config", "-c", str(conf))
    assert 2 == r.returncode
    assert f"mlsd: {conf}: [report] unknown key 'tmie': did you mean 'time'?\n" == r.stderr.decode()


def test_check_config_missing_file_exits_2() -> None:
    """A missing config file: exit 2 and what to do."""
    r = mlsd("check-config", "-c", "/nonexistent/mlsd.conf")
    assert 2 == r.returncode
    assert "config file not found" in r.stderr.decode()


def test_parse_with_config_uses_its_date_format(tmp_path: Path) -> None:
    """`parse -c` applies the config's date format and zone."""
    conf = tmp_path / "mlsd.conf"
    conf.write_text("[csv]\ndate_format = maillogsentinel\n[source]\ntimezone = Europe/Paris\n")
    log = tmp_path / "sample.log"
    log.write_bytes(MLS_LOG.read_bytes())
    os.utime(log, (1759536000, 1759536000))  # 2025-10-04: the year comes from the mtime
    rows = csv_rows(mlsd("parse", "-c", str(conf), str(log)).stdout)
    assert "28/09/2025 00:33" == rows[0]["date"]


def test_usage_error_exits_2() -> None:
    """An unknown option is a usage error: exit 2."""
    assert 2 == mlsd("parse", "--frmat", "csv", str(MLS_LOG)).returncode


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_output_is_terminal_safe(tmp_path: Path, fmt: str) -> None:
    """An attacker's ESC sequences in a username never reach stdout raw."""
    log = tmp_path / "mail.log"
    log.write_bytes(
        b"Nov 25 04:38:00 mail postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN "
        b"authentication failed: x, sasl_username=\x1b]0;owned\x07\x1b[2J=cmd\n"
    )
    out = mlsd("parse", "--format", fmt, str(log)).stdout
    assert b"\x1b" not in out and b"\x07" not in out


@pytest.mark.parametrize("chunk", [1, 2, 7, 100, 4096])
def test_parse_is_the_same_whatever_the_block_size(
    chunk: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """Lines cut by block boundaries (at the first byte, mid-line, a line longer than a
    block, no final newline) give exactly the rows and counts of one whole read."""
    log = tmp_path / "mail.log"
    log.write_bytes(
        MLS_LOG.read_bytes()
        + LAB_LOG.read_bytes()
        + b"x" * 10_000
        + b"\n"
        + MLS_LOG.read_bytes().splitlines(keepends=True)[0].rstrip(b"\n")
    )
    monkeypatch.setenv("TZ", "UTC")
    assert 0 == main(["parse", str(log)])
    whole = capsysbinary.readouterr()
    monkeypatch.setattr("mlsd.app.cmd_parse._CHUNK", chunk)
    assert 0 == main(["parse", str(log)])
    assert whole == capsysbinary.readouterr()
    # 139 sample rows, the lab capture's 32, and the unterminated copy of the first line.
    assert b" 172 events" in whole.err


def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_a_command_alone_is_parsed_as_by_the_whole_parser() -> None:
    """`main` builds only the parser of the command being run (a quarter of a start):
    every command's options, help and defaults are those of the whole parser."""
    whole = _commands(build_parser())
    assert len(whole) >= 15
    for name, sub in whole.items():
        alone = _commands(build_parser(name))
        assert list(alone) == [name]
        assert alone[name].format_help() == sub.format_help()
        assert _named(alone[name]._defaults) == _named(sub._defaults)


def _named(defaults: dict[str, object]) -> dict[str, object]:
    # A command's `func` may be a closure made with its parser: the same code, another object.
    return {k: getattr(v, "__qualname__", v) for k, v in defaults.items()}


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["parse", "x"], "parse"),
        (["-c", "/etc/x.conf", "status"], "status"),
        (["--config", "parse", "report"], "report"),  # a config file named "parse"
        (["--config=/x", "--debug", "store", "check"], "store"),
        (["-c/x", "scan"], "scan"),
        (["--help", "parse"], None),
        (["--version"], None),
        ([], None),
        (["--bogus", "parse"], None),
    ],
)
def test_the_command_being_run(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


def test_an_unknown_command_lists_them_all(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bogus"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err
    assert "'parse'" in err and "'store'" in err
