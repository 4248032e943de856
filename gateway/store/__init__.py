"""Where data rests: in-memory telemetry windows and the gateway's SQLite file."""
