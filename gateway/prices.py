"""The price table: standard service items and their published price bands (rules/prices.yaml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway import yaml_input


class PriceTableError(Exception):
    """The price table is broken; the message names the file and the item."""


@dataclass(frozen=True, slots=True)
class ServiceItem:
    item_id: str
    title_en: str
    title_zh: str
    labour: tuple[float, float]
    parts: tuple[float, float]

    @property
    def band(self) -> tuple[float, float]:
        return self.labour[0] + self.parts[0], self.labour[1] + self.parts[1]


@dataclass(frozen=True)
class PriceTable:
    currency: str
    items: dict[str, ServiceItem]

    def quote(self, item_ids: tuple[str, ...]) -> dict[str, Any]:
        """The ticket's price section: each item with its band, and the total band."""
        items = [self.items[i] for i in item_ids]
        return {
            "currency": self.currency,
            "items": [{"id": i.item_id, "title": {"en": i.title_en, "zh": i.title_zh}, "labour": list(i.labour),
                       "parts": list(i.parts), "band": list(i.band)} for i in items],
            "total_band": [sum(i.band[0] for i in items), sum(i.band[1] for i in items)],
        }


def load_prices(path: Path) -> PriceTable:
    try:
        doc = yaml_input.load_file(path)
    except FileNotFoundError:
        raise PriceTableError(f"{path}: price table not found") from None
    except yaml.YAMLError as exc:
        raise PriceTableError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("currency"), str) or not isinstance(doc.get("items"), dict):
        raise PriceTableError(f"{path}: needs 'currency' and 'items'")
    items: dict[str, ServiceItem] = {}
    errors = []
    for item_id, spec in doc["items"].items():
        try:
            title = spec["title"]
            labour, parts = (tuple(float(v) for v in spec[k]) for k in ("labour", "parts"))
            if len(labour) != 2 or len(parts) != 2 or labour[0] > labour[1] or parts[0] > parts[1]:
                raise ValueError("labour and parts are [low, high]")
            items[item_id] = ServiceItem(item_id, str(title["en"]), str(title["zh"]), (labour[0], labour[1]),
                                         (parts[0], parts[1]))
        except (KeyError, TypeError, ValueError) as exc:
            errors.append(f"{path}: item '{item_id}': {exc}")
    if errors:
        raise PriceTableError("\n".join(errors))
    return PriceTable(doc["currency"], items)
