"""Appliance diagnostics gateway: telemetry in, pre-diagnosed service tickets out."""

from importlib.metadata import PackageNotFoundError, version

try:  # the one version, pyproject.toml's, as installed (an editable install in a checkout too)
    __version__ = version("appliance-gateway")
except PackageNotFoundError:
    __version__ = "0+unknown (not installed)"
