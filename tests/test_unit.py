"""The systemd unit: `systemd-analyze verify` passes and `security` rates it at most 2.0.

Both work offline, without a running systemd (the `systemd` Debian package provides them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parent.parent / "contrib" / "systemd" / "mlsd.service"
ANALYZE = shutil.which("systemd-analyze")

pytestmark = pytest.mark.skipif(
    ANALYZE is None and not os.environ.get("CI"),
    reason="systemd-analyze is not installed (Debian package systemd); CI installs it",
)


def _unit_for_this_machine(tmp_path: Path) -> Path:
    # verify checks that ExecStart exists: point it at the mlsd this test suite runs.
    mlsd = shutil.which("mlsd") or str(Path(sys.executable).parent / "mlsd")
    unit = tmp_path / "mlsd.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/mlsd", mlsd))
    return unit


def test_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing wrong (man page lookup aside: not installed here)."""
    assert ANALYZE is not None, "CI must install systemd-analyze"
    r = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(_unit_for_this_machine(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (0, "") == (r.returncode, r.stderr.strip())


def test_unit_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    """`systemd-analyze security --offline=yes` rates the unit at most 2.0."""
    assert ANALYZE is not None, "CI must install systemd-analyze"
    r = subprocess.run(
        [ANALYZE, "security", "--offline=yes", str(_unit_for_this_machine(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"Overall exposure level for mlsd.service: (\d+\.\d+)", r.stdout)
    assert m is not None, r.stdout + r.stderr
    assert float(m[1]) <= 2.0


def test_unit_has_the_required_settings() -> None:
    """The settings the service contract relies on are present."""
    text = UNIT.read_text()
    for setting in (
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "Restart=on-failure",
        "DynamicUser=yes",
        "SupplementaryGroups=adm systemd-journal",
        "StateDirectory=mlsd",
        "LogsDirectory=mlsd",
        "ConfigurationDirectory=mlsd",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
    ):
        assert setting in text, setting


def test_the_dynamic_user_can_enter_the_configuration_directory() -> None:
    """systemd makes ConfigurationDirectory= root-owned (only the state, cache and logs
    directories go to the dynamic user), and that user is in adm, not root's group: the
    mode must let others search it, or mlsd cannot open /etc/mlsd/mlsd.conf."""
    settings = dict(line.split("=", 1) for line in UNIT.read_text().splitlines() if "=" in line)
    assert settings["DynamicUser"] == "yes"
    assert settings["ConfigurationDirectory"] == "mlsd"
    mode = int(settings.get("ConfigurationDirectoryMode", "0755"), 8)
    assert mode & 0o001, oct(mode)
