"""mlsd.8 cannot rot: it renders without warnings and matches the CLI and the config.

The page is hand-written roff (man(7) macros). These tests read its source (a small
roff-to-text reduction: font escapes dropped, `\\-` made `-`, macro arguments joined as the
macros join them) and check it against what the code says:

- every command and option of `mlsd.app.cli.build_parser()` is documented, in the command's own
  `.SS` under COMMANDS (the common ones under OPTIONS), and the other way round: the page
  documents no command or option the parser does not have;
- every section and key of `mlsd.config.sections()` is a `.SS [section]` / `.TP` entry under
  CONFIGURATION, showing the default that `check-config` prints;
- every `Skip` reason is listed for `parse --explain`; every environment variable the code
  reads is under ENVIRONMENT; exit codes, signals and files are there;
- groff and man render it without a warning, within 80 columns.

groff and man are needed for the rendering tests: without them they skip on a developer
machine, and fail when CI is set (CI can never pass by checking nothing).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlsd import config
from mlsd.app import cli, cmd_common
from mlsd.ingest.grammar import Skip

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "mlsd.8"

# The commands and options being added alongside the page: they must be documented even
# before the parser has them (the parser-driven tests cover them once it does).
NEW_COMMANDS: dict[str, tuple[str, ...]] = {
    "status": ("--json",),
    "reset": ("--archive", "--yes"),
    "purge": ("--archive", "--yes"),
    "migrate-config": ("-o",),
    "parse": ("--explain",),
}

REQUIRED_SECTIONS = (
    "NAME",
    "SYNOPSIS",
    "DESCRIPTION",
    "COMMANDS",
    "OPTIONS",
    "CONFIGURATION",
    "SIGNALS",
    "FILES",
    "EXIT STATUS",
    "ENVIRONMENT",
    "EXAMPLES",
    "SEE ALSO",
)

FILES = (
    "/etc/mlsd/mlsd.conf",
    "/var/log/mail.log",
    "/var/log/mlsd/mlsd.csv",
    "/var/lib/mlsd/",
    "checkpoint.json",
    "mlsd.lock",
    "report.json",
    "coverage.json",
    "alerts.jsonl",
    "outbox/",
    "outbox/failed/",
    "days/",
    "reports/",
)

SEE_ALSO = (
    "systemctl(1)",
    "journalctl(1)",
    "logrotate(8)",
    "postconf(5)",
    "geoipupdate(1)",
    "docs/troubleshooting.md",
)

# An option word in running text: not inside a hyphenated word.
_OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


# ---- a small roff reader -----------------------------------------------------------------

_SPECIAL = {"em": "\N{EM DASH}", "en": "\N{EN DASH}", "lq": "\u201c", "rq": "\u201d"}
_ESCAPE = re.compile(r"\\(f(?:\[[^\]]*\]|\(..|.)|\(..|\[[^\]]*\]|.)")
# Alternating-font macros join their arguments without spaces; the others with one.
_ALTERNATING = {"BR", "RB", "IR", "RI", "BI", "IB"}


def _text(raw: str) -> str:
    """Roff text to plain text: fonts dropped, `\\-` → `-`, `\\&` and `\\%` removed."""

    def one(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc.startswith("f"):
            return ""
        if esc.startswith("("):
            return _SPECIAL.get(esc[1:], "")
        if esc.startswith("["):
            return _SPECIAL.get(esc[1:-1], "")
        return {"-": "-", "&": "", "%": "", "e": "\\", " ": " ", "~": " "}.get(esc, esc)

    return _ESCAPE.sub(one, raw)


def _args(rest: str) -> list[str]:
    """A macro's arguments: split at spaces, double quotes group (`""` is a quote)."""
    out: list[str] = []
    i, n = 0, len(rest)
    while i < n:
        if rest[i] == " ":
            i += 1
            continue
        if rest[i] == '"':
            i += 1
            buf = []
            while i < n:
                if rest[i] == '"':
                    if i + 1 < n and rest[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(rest[i])
                i += 1
            out.append("".join(buf))
        else:
            j = rest.find(" ", i)
            j = n if j < 0 else j
            out.append(rest[i:j])
            i = j
    return out


@dataclass
class Part:
    """A `.SH` or `.SS` heading and what follows it: text lines and `.TP` tags."""

    heading: str
    lines: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    subs: list[Part] = field(default_factory=list)

    @property
    def text(self) -> str:
        """All of it, one space between words (subsections included)."""
        words = " ".join([*self.lines, *(f"{s.heading} {s.text}" for s in self.subs)])
        return " ".join(words.split())

    def sub(self, heading: str) -> Part | None:
        return next((s for s in self.subs if s.heading == heading), None)


def read_page(source: str) -> dict[str, Part]:
    """The page as `.SH` parts (with their `.SS` subparts), in plain text."""
    sections: dict[str, Part] = {}
    top: Part | None = None
    cur: Part | None = None
    want_tag = False
    for physical in source.splitlines():
        if physical.startswith(('.\\"', "'\\\"")) or physical == ".":
            continue
        raw = re.sub(r'(?<!\\)\\".*', "", physical)  # a comment at the end of a line
        if raw.startswith((".", "'")):
            name, _, rest = raw[1:].partition(" ")
            args = [_text(a) for a in _args(rest)]
            line = ("" if name in _ALTERNATING else " ").join(args)
            if name == "SH":
                top = cur = sections[line] = Part(line)
                continue
            if name == "SS":
                assert top is not None, f".SS before any .SH: {raw}"
                cur = Part(line)
                top.subs.append(cur)
                continue
            if name == "TP":
                want_tag = True
                continue
            if name not in {"B", "I", "SM", "SB", *_ALTERNATING}:
                continue  # .PP, .IP, .RS, .RE, .br, .EX, .EE, .TH: layout only
        else:
            line = _text(raw)
        if cur is None:
            continue
        cur.lines.append(line)
        if want_tag:
            cur.tags.append(" ".join(line.split()))
            want_tag = False
    return sections


@pytest.fixture(scope="module")
def source() -> str:
    return PAGE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def page(source: str) -> dict[str, Part]:
    return read_page(source)


def _options(text: str) -> set[str]:
    return set(_OPTION.findall(text))


# ---- the parser, as argparse built it ----------------------------------------------------


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for action in parser._actions for s in action.option_strings}


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("build_parser() has no subcommands")


PARSER = cli.build_parser()
COMMANDS = _subcommands(PARSER)
COMMON = _option_strings(PARSER)  # -h/--help, -c/--config, --debug, --version


def _command_part(page: dict[str, Part], name: str) -> Part:
    """The `.SS mlsd NAME …` of COMMANDS."""
    for part in page["COMMANDS"].subs:
        words = part.heading.split()
        if words[:2] == ["mlsd", name]:
            return part
    raise AssertionError(f"COMMANDS has no `.SS mlsd {name}`")


# ---- rendering ---------------------------------------------------------------------------


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (CI is set: install groff-base and man-db)")
        pytest.skip(f"{tool} is not installed")
    return path


def _plain(rendered: str) -> str:
    """Rendered text without SGR sequences or overstriking."""
    rendered = re.sub(r"\x1b\[[0-9;]*m", "", rendered)
    return re.sub(r".\x08", "", rendered)


def test_groff_renders_without_warnings() -> None:
    groff = _need("groff")
    done = subprocess.run(
        [groff, "-man", "-ww", "-z", str(PAGE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_man_renders_without_warnings_in_80_columns() -> None:
    man = _need("man")
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8", "MANPAGER": "cat", "PAGER": "cat"}
    done = subprocess.run(
        [man, "--warnings", "-l", str(PAGE)],
        capture_output=True,  # stdout a pipe: no pager, no terminal width
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = _plain(done.stdout).splitlines()
    assert any(line.startswith("NAME") for line in lines), done.stdout[:500]
    wide = [line for line in lines if len(line) > 80]
    assert not wide, f"lines wider than 80 columns: {wide}"


def test_groff_text_has_the_commands() -> None:
    """What a reader sees, not only the source: every command is in the rendered page."""
    groff = _need("groff")
    done = subprocess.run(
        [groff, "-man", "-Tutf8", "-P-c", "-rLL=200n", str(PAGE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = _plain(done.stdout).replace("\N{MINUS SIGN}", "-").replace("\N{HYPHEN}", "-")
    for name in [*COMMANDS, *NEW_COMMANDS]:
        assert f"mlsd {name}" in text, name


# ---- structure ---------------------------------------------------------------------------


def test_title_and_name(source: str, page: dict[str, Part]) -> None:
    # The unit says Documentation=man:mlsd(8).
    assert re.search(r"^\.TH MLSD 8 ", source, re.MULTILINE)
    assert "Documentation=man:mlsd(8)" in (ROOT / "contrib/systemd/mlsd.service").read_text()
    # whatis/lexgrog want `name \- description` on one line.
    assert re.search(r"^\.SH NAME\nmlsd \\- \S", source, re.MULTILINE)
    assert page["NAME"].text.startswith("mlsd - ")


def test_sections_in_order(page: dict[str, Part]) -> None:
    order = list(page)
    missing = [s for s in REQUIRED_SECTIONS if s not in page]
    assert not missing, f"missing sections: {missing}"
    positions = [order.index(s) for s in REQUIRED_SECTIONS]
    assert positions == sorted(positions), order


def test_options_are_written_with_escaped_hyphens(source: str) -> None:
    """`\\-` everywhere a reader types a hyphen: a bare `-` may render as U+2010."""
    bad = []
    for number, line in enumerate(source.splitlines(), 1):
        if line.startswith('.\\"'):
            continue
        if re.search(r"(?:^|[\s(\[|/])--?[A-Za-z]", line):
            bad.append(f"{number}: {line}")
    assert not bad, "options with a bare hyphen:\n" + "\n".join(bad)


# ---- commands and options ----------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_cli_command_and_option_is_documented(page: dict[str, Part], name: str) -> None:
    assert re.search(rf"(?:^| )mlsd {re.escape(name)}(?: |$)", page["SYNOPSIS"].text), (
        f"SYNOPSIS lacks `mlsd {name}`"
    )
    part = _command_part(page, name)
    own = _option_strings(COMMANDS[name]) - COMMON
    missing = own - _options(part.text)
    assert not missing, f"`.SS mlsd {name}` does not document {sorted(missing)}"
    missing = own - _options(page["SYNOPSIS"].text)
    assert not missing, f"SYNOPSIS does not show {sorted(missing)} for `mlsd {name}`"


def test_common_options_are_documented(page: dict[str, Part]) -> None:
    assert {"-c", "--config", "--debug", "--version", "-h", "--help"} <= COMMON
    missing = COMMON - _options(page["OPTIONS"].text)
    assert not missing, f"OPTIONS does not document {sorted(missing)}"
    assert "/etc/mlsd/mlsd.conf" in page["OPTIONS"].text
    assert str(config.DEFAULT_PATH) == "/etc/mlsd/mlsd.conf"


@pytest.mark.parametrize("name", sorted(NEW_COMMANDS))
def test_new_commands_are_documented(page: dict[str, Part], name: str) -> None:
    part = _command_part(page, name)
    assert re.search(rf"(?:^| )mlsd {re.escape(name)}(?: |$)", page["SYNOPSIS"].text)
    missing = set(NEW_COMMANDS[name]) - _options(part.text)
    assert not missing, f"`.SS mlsd {name}` does not document {sorted(missing)}"


def test_the_page_documents_nothing_the_cli_lacks(page: dict[str, Part]) -> None:
    """The other way round: every documented command exists, with every option it shows.

    Fails while the page is ahead of the CLI (commands being added alongside it).
    """
    problems = []
    for part in page["COMMANDS"].subs:
        name = part.heading.split()[1]
        if name not in COMMANDS:
            problems.append(f"`mlsd {name}` is not a command of build_parser()")
            continue
        extra = _options(part.text) - _option_strings(COMMANDS[name])
        if extra:
            problems.append(f"`mlsd {name}` has no option {sorted(extra)}")
    assert not problems, "\n".join(problems)


def test_explain_lists_every_skip_reason(page: dict[str, Part]) -> None:
    text = _command_part(page, "parse").text
    assert "LINENO: recorded" in text
    assert "LINENO: skipped (REASON)" in text
    missing = [r for r in [*(s.value for s in Skip), "successful login"] if r not in text]
    assert not missing, f"--explain reasons not listed: {missing}"


def test_debug_logging_of_skipped_lines(page: dict[str, Part]) -> None:
    text = page["DESCRIPTION"].text
    assert "[log] level = DEBUG" in text
    assert "at most 10 such lines per second" in text


# ---- configuration -----------------------------------------------------------------------


def _defaults() -> dict[str, dict[str, str]]:
    """`key = value` as `check-config` prints the defaults, by section."""
    out: dict[str, dict[str, str]] = {}
    section = ""
    for line in config.render(config.Config()).splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = m.group(1)
            out[section] = {}
        elif " = " in line or line.endswith(" ="):
            key = line.split(" =", 1)[0]
            out[section][key] = " ".join(line.split())
    return out


def test_every_config_section_and_key_is_documented(page: dict[str, Part]) -> None:
    part = page["CONFIGURATION"]
    assert "mlsd.conf.example" in part.text
    defaults = _defaults()
    headings = [s.heading for s in part.subs]
    expected = [f"[{name}]" for name in config.sections()]
    assert headings == expected, "CONFIGURATION's .SS headings differ from the schema"
    for name, keys in config.sections().items():
        sub = part.sub(f"[{name}]")
        assert sub is not None
        documented = [tag.split(" =", 1)[0] for tag in sub.tags]
        assert documented == list(keys), f"[{name}]: keys differ from the schema"
        for tag, key in zip(sub.tags, keys, strict=True):
            assert tag == defaults[name][key], f"[{name}] {key}: the page shows {tag!r}"


def test_config_example_exists() -> None:
    assert (ROOT / "mlsd.conf.example").is_file()


# ---- signals, exit status, files, environment, see also ----------------------------------


def test_signals(page: dict[str, Part]) -> None:
    part = page["SIGNALS"]
    assert part.tags == ["SIGHUP", "SIGUSR1", "SIGTERM, SIGINT"]
    text = part.text
    assert "Reload the configuration" in text
    assert "report of today so far" in text
    assert "within 20 seconds" in text
    assert "128 + the signal number" in text


def test_exit_status(page: dict[str, Part]) -> None:
    part = page["EXIT STATUS"]
    assert part.tags[:3] == ["0", "1", "2"]
    for signal in ("SIGINT", "SIGTERM"):
        assert signal in part.text
    assert (cmd_common.EXIT_OK, cmd_common.EXIT_FAILURE, cmd_common.EXIT_USAGE) == (0, 1, 2)


def test_files(page: dict[str, Part]) -> None:
    text = page["FILES"].text
    missing = [f for f in FILES if f not in text]
    assert not missing, f"FILES lacks {missing}"
    assert re.search(r"archive-\S+/", text), "FILES lacks the archive-*/ directories"


def _environment_read_by_code() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "mlsd").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        names |= set(re.findall(r"\benv(?:iron)?\.get\(\s*\"([A-Z][A-Z0-9_]*)\"", text))
        names |= set(re.findall(r"\benv(?:iron)?\[\s*\"([A-Z][A-Z0-9_]*)\"\s*\]", text))
    return names


def test_environment(page: dict[str, Part]) -> None:
    text = page["ENVIRONMENT"].text
    read = _environment_read_by_code()
    assert {"NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM"} <= read
    missing = sorted(name for name in read if name not in text)
    assert not missing, f"ENVIRONMENT lacks variables the code reads: {missing}"


def test_see_also(page: dict[str, Part]) -> None:
    text = page["SEE ALSO"].text
    missing = [ref for ref in SEE_ALSO if ref not in text]
    assert not missing, f"SEE ALSO lacks {missing}"
