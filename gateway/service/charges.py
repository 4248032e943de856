"""Compare what the technician charged with what the gateway diagnosed and the published price bands. Pure.

A charged item that was not among the diagnosed standard items, or priced above its published band, is
flagged. With new evidence in the repair report (the technician's own finding, e.g. a photo hash and a
note) the flag stays visible but is marked explained; without it, the home owner is told to ask why.
"""

from __future__ import annotations

from typing import Any


def charge_flags(quote: dict[str, Any] | None, charged: list[dict[str, Any]],
                 new_evidence: str) -> list[dict[str, Any]]:
    """One flag per charged item that departs from the diagnosis; [] when everything matches."""
    bands = {item["id"]: item["band"] for item in (quote or {}).get("items", [])}
    currency = f" {quote['currency']}" if quote and quote.get("currency") else ""
    explained = bool(new_evidence.strip())
    flags = []
    for item in charged:
        item_id, price = str(item.get("id", "")), float(item.get("price", 0.0))
        if item_id not in bands:
            problem = f"{item_id} was charged ({price:g}{currency}) but not diagnosed"
        elif price > bands[item_id][1]:
            problem = (f"{item_id} charged {price:g}{currency}, above its published band "
                       f"{bands[item_id][0]:g}-{bands[item_id][1]:g}")
        else:
            continue
        flags.append({"item": item_id, "price": price, "problem": problem, "explained": explained})
    return flags
