"""Map an incident to the ticket the service platform receives (docs/upstream-api.yaml). Pure."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from gateway.diagnosis.differential import lead, rank
from gateway.model import Device
from gateway.prices import PriceTable

TICKET_SCHEMA_VERSION = 1


def incident_fingerprint(site: str, device_id: str, rule_id: str, onset_ts: float) -> str:
    """Stable identity of one fault episode; the upstream idempotency key."""
    text = f"{site}|{device_id}|{rule_id}|{onset_ts:.3f}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def ticket_payload(*, site: str, device_id: str, appliance_type: str, device: Device | None,
                   findings: list[dict[str, Any]], fingerprint: str, opened_at: float,
                   prices: PriceTable | None = None, partition: tuple[int, int] | None = None) -> dict[str, Any]:
    """The ticket for one appliance case: the lead finding names it, every finding feeds the ranked causes.
    `partition`: the worker's share of a partitioned fleet, named on the ticket (the key does not depend on it,
    so the same episode found by another worker after a rebalance is still the same ticket)."""
    meta = device.meta if device else None
    first = lead(findings)
    candidates, ruled_out = rank(findings)
    items = _union(item for f in findings for item in f["service_items"])
    ticket = {
        "schema_version": TICKET_SCHEMA_VERSION,
        "idempotency_key": fingerprint,
        "opened_at": opened_at,
        "appliance": {
            "device_id": device_id,
            "type": appliance_type,
            "brand": meta.brand if meta else "",
            "model": meta.model if meta else "",
            "serial": meta.serial if meta else "",
            "firmware": meta.firmware if meta else "",
            "site": site,
        },
        "fault": {"code": first["code"], "title": first["title"], "severity": first["severity"],
                  "category": first["category"], "explanation": first["explanation"]},
        "probable_causes": candidates,
        "ruled_out": ruled_out,
        "checks": _union(c for f in findings for c in f["checks"]),
        "parts": _union(p for f in findings for p in f["parts"]),
        "price": prices.quote(tuple(items)) if prices and items else None,
        "evidence": first["evidence"],
        "findings": [{"rule": f["rule"], "code": f["code"], "title": f["title"], "severity": f["severity"],
                      "onset_ts": f["onset_ts"], "detected_ts": f["detected_ts"],
                      "observed": f["evidence"]["observed"]} for f in findings],
        "findings_detail": findings,
    }
    if partition is not None:
        ticket["worker"] = {"partition": partition[0], "partitions": partition[1]}
    return ticket


def _union(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))
