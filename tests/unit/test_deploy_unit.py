"""The shipped systemd unit is one systemd itself accepts, and runs the gateway as an unprivileged user."""

from __future__ import annotations

import shutil
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

import pytest

from gateway.config import PROJECT_ROOT

UNIT = PROJECT_ROOT / "deploy" / "appliance-gateway.service"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze (Debian package systemd) is needed to check the unit; make test installs it")
    gateway = Path(sys.executable).parent / "appliance-gateway"  # ExecStart must name a program that exists
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/appliance-gateway/venv/bin/appliance-gateway", str(gateway)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_unit_runs_unprivileged_and_stops_like_ctrl_c() -> None:
    parser = ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    service = parser["Service"]
    assert service["User"] not in ("", "root") and service["KillSignal"] == "SIGINT"
    assert service["ExecStart"].split()[1:3] == ["run", "--config"]
    assert service["StateDirectoryMode"] == "0700" and service["UMask"] == "0077"
