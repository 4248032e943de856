"""The technician's and home owner's view: pages and a JSON API. Reads only; never writes telemetry."""
