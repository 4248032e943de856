"""Copies of what the gateway sees, sent to outside stores (InfluxDB)."""
