"""Map an incident to the ticket the service platform receives (docs/upstream-api.yaml). Pure."""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.diagnosis.prices import PriceTable
from gateway.engine.rules import Rule
from gateway.model import Device

TICKET_SCHEMA_VERSION = 1


def incident_fingerprint(site: str, device_id: str, rule_id: str, onset_ts: float) -> str:
    """Stable identity of one fault episode; the upstream idempotency key."""
    text = f"{site}|{device_id}|{rule_id}|{onset_ts:.3f}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def ticket_payload(*, site: str, device_id: str, appliance_type: str, device: Device | None, rule: Rule,
                   fingerprint: str, evidence: dict[str, Any], opened_at: float,
                   prices: PriceTable | None = None) -> dict[str, Any]:
    meta = device.meta if device else None
    diagnosis = rule.diagnosis
    return {
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
        "fault": {
            "code": diagnosis.code,
            "title": {"en": diagnosis.title_en, "zh": diagnosis.title_zh},
            "severity": diagnosis.severity,
            "category": diagnosis.category,
            "explanation": {"en": diagnosis.explanation_en, "zh": diagnosis.explanation_zh},
        },
        "probable_causes": [
            {"cause": c.cause, "likelihood": c.likelihood, "reason": c.reason} for c in diagnosis.causes
        ],
        "checks": list(diagnosis.checks),
        "parts": list(diagnosis.parts),
        "price": prices.quote(diagnosis.service_items) if prices and diagnosis.service_items else None,
        "evidence": evidence,
    }
