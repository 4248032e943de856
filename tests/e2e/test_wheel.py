"""The gateway as someone installs it: the wheel built from this checkout, installed into a fresh virtual
environment in a temporary folder (its dependencies from the package index), and run from an empty folder,
so nothing can come from the checkout. The rules, profiles, prices, vendor tables, rule tests and API documents
must all be in the wheel."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from firmware_sim.localnet import free_port
from gateway.config import PROJECT_ROOT

pytestmark = pytest.mark.e2e


def run(*args: str | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                            env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, f"{' '.join(map(str, args))}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result


def test_the_wheel_installs_into_a_fresh_venv_and_runs_from_an_empty_folder(tmp_path: Path) -> None:
    source = tmp_path / "source"  # a copy, so the build leaves nothing behind in the checkout
    shutil.copytree(PROJECT_ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".cache", "var", "build", "*.egg-info", "__pycache__", ".*_cache", "test-artifacts"))
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", tmp_path / "dist", source, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("appliance_gateway-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("gateway/shipped/rules/profiles/air_conditioner.yaml", "gateway/shipped/rules/prices.yaml",
                    "gateway/shipped/rules/vendor_codes/lg_washer.yaml", "gateway/shipped/rules/tests/washer.test.yaml",
                    "gateway/shipped/docs/web-api.yaml", "gateway/shipped/docs/upstream-api.yaml",
                    "firmware_sim/scenarios/each-fault-alone.yaml"):
        assert shipped in names, f"{shipped} is not in {wheel.name}"
    run(sys.executable, "-m", "venv", tmp_path / "venv", cwd=tmp_path)
    run(tmp_path / "venv" / "bin" / "pip", "install", "--quiet", wheel, cwd=tmp_path)
    gateway = tmp_path / "venv" / "bin" / "appliance-gateway"
    empty = tmp_path / "empty"
    empty.mkdir()

    assert run(gateway, "--version", cwd=empty).stdout.startswith("appliance-gateway ")
    optional = run(tmp_path / "venv" / "bin" / "python", "-c",
                   "import importlib.util; print(importlib.util.find_spec('influxdb_client') is None)", cwd=empty)
    assert optional.stdout.strip() == "True", "the InfluxDB client is an extra, not a requirement"
    assert "ok: " in run(gateway, "rules", "check", cwd=empty).stdout
    assert " 0 failed" in run(gateway, "rules", "test", cwd=empty).stdout
    demo = run(gateway, "demo", "--duration", "25", "--time-scale", "10", "--fault-after", "5", "--data-dir",
               empty / "demo", "--web-port", "0", "--platform-port", "0", "--broker-port", "0", cwd=empty, timeout=120)
    assert "The service platform received 1 ticket(s)." in demo.stdout, demo.stdout[-3000:]

    (empty / "gateway.toml").write_text(f"[broker]\nembedded_port = {free_port()}\n[web]\nport = {free_port()}\n")
    process = subprocess.Popen([gateway, "run", "--config", "gateway.toml"], cwd=empty, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, output = time.monotonic() + 60, ""
        while "web console on" not in output and time.monotonic() < deadline and process.poll() is None:
            output += process.stdout.readline() if process.stdout else ""
        assert "web console on" in output, output[-3000:]
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == 0, (output + rest)[-3000:]
    assert "Traceback" not in output + rest
    assert (empty / "var" / "gateway.db").is_file(), "run keeps its data beside its config"
