"""`make install` into a staging DESTDIR: the venv, the command, the unit, the config.

It really runs pip (from the index CI can reach, or pip's cache), so it is one test of
two installs rather than many small ones.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _install(destdir: Path, *more: str) -> str:
    res = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "install", f"DESTDIR={destdir}",
         f"PYTHON={sys.executable}", *more],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


@pytest.mark.timeout(900)
def test_make_install_stages_everything_and_keeps_an_existing_config(tmp_path: Path) -> None:
    example = (REPO / "mlsd.conf.example").read_text()

    # 1: defaults (PREFIX=/usr/local), no config yet: the example is installed.
    d1 = tmp_path / "one"
    _install(d1)
    app = d1 / "usr/local/lib/mlsd"
    link = d1 / "usr/local/bin/mlsd"
    assert link.is_symlink() and str(link.readlink()) == "/usr/local/lib/mlsd/bin/mlsd"
    # The venv's scripts name their final place, not the staging directory.
    assert (app / "bin/mlsd").read_text().splitlines()[0] == "#!/usr/local/lib/mlsd/bin/python"
    assert str(d1) not in (app / "pyvenv.cfg").read_text()
    conf = d1 / "etc/mlsd/mlsd.conf"
    assert conf.read_text() == example
    assert conf.stat().st_mode & 0o777 == 0o644  # no secret in the example
    unit = (d1 / "etc/systemd/system/mlsd.service").read_text()
    assert "ExecStart=/usr/local/bin/mlsd run -c /etc/mlsd/mlsd.conf" in unit
    # The unit's Documentation=man:mlsd(8) has a page to point at.
    page = d1 / "usr/local/share/man/man8/mlsd.8"
    assert page.read_bytes() == (REPO / "mlsd.8").read_bytes()
    assert page.stat().st_mode & 0o777 == 0o644
    # The staged interpreter runs the installed package with its dependencies.
    res = subprocess.run(
        [str(app / "bin/python"), "-c",
         "import mlsd.app.service, pyinotify, maxminddb, aiosmtplib, sdnotify, structlog, sys;"
         "from mlsd.app.cli import main; sys.exit(main(['--version']))"],
        capture_output=True, text=True, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "mlsd" in res.stdout
    # Nor does the bytecode name the staging directory (a traceback would show it).
    pycs = list(app.rglob("*.pyc"))
    assert any("/mlsd/__pycache__/" in str(p) for p in pycs)
    staged = [p for p in pycs if str(d1).encode() in p.read_bytes()]
    assert [] == staged
    assert any(b"/usr/local/lib/mlsd/lib/" in p.read_bytes() for p in pycs)

    # 2: another PREFIX, and an admin's config already there: it is kept as it is.
    d2 = tmp_path / "two"
    (d2 / "etc/mlsd").mkdir(parents=True)
    (d2 / "etc/mlsd/mlsd.conf").write_text("# mine\n[paths]\nmail_log = /var/log/maillog\n")
    out = _install(d2, "PREFIX=/opt/mlsd")
    assert "kept the existing" in out
    assert (d2 / "etc/mlsd/mlsd.conf").read_text().startswith("# mine\n")
    assert (d2 / "opt/mlsd/bin/mlsd").is_symlink()
    assert (d2 / "opt/mlsd/share/man/man8/mlsd.8").is_file()
    unit = (d2 / "etc/systemd/system/mlsd.service").read_text()
    assert "ExecStart=/opt/mlsd/bin/mlsd run -c /etc/mlsd/mlsd.conf" in unit

    # 3: uninstall removes what install put there and keeps the config (and says so).
    res = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "uninstall", f"DESTDIR={d2}",
         "PREFIX=/opt/mlsd"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "kept /etc/mlsd/mlsd.conf" in res.stdout
    assert (d2 / "etc/mlsd/mlsd.conf").read_text().startswith("# mine\n")
    for gone in ("opt/mlsd/lib/mlsd", "opt/mlsd/bin/mlsd", "opt/mlsd/share/man/man8/mlsd.8",
                 "etc/systemd/system/mlsd.service"):  # fmt: skip
        assert not (d2 / gone).exists() and not (d2 / gone).is_symlink(), gone
