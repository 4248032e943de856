"""Appliance diagnostics gateway: telemetry in, pre-diagnosed service tickets out."""

__version__ = "0.1.0"
