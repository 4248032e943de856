"""Build hook (the project's metadata is in pyproject.toml): the wheel carries the shipped rules, profiles,
prices, vendor tables, rule tests and API documents under gateway/shipped/, where `gateway.config.SHIPPED_ROOT`
finds them through importlib.resources when the gateway runs from an installed wheel rather than a checkout.
The files stay where the project keeps them (rules/, docs/); they are copied only into the build."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("rules", "docs/web-api.yaml", "docs/upstream-api.yaml")


class BuildWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "gateway" / "shipped"
        for name in SHIPPED:
            source, destination = ROOT / name, target / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(source, destination)


setup(cmdclass={"build_py": BuildWithShippedFiles})
