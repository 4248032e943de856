"""Vendor display/error codes mapped to canonical faults, one table per brand and appliance type.

Each canonical fault becomes a boolean column `code_<fault>` of its appliance type: a code arriving on the
event topic is stored as a sample in that column, so canonical faults are ordinary rules (`code_drain_timeout
== 1`) with evidence, tickets, grouping and inhibition like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from gateway import yaml_input
from gateway.engine.profiles import MetricSpec, Profile

COLUMN_PREFIX = "code_"


class VendorCodeError(Exception):
    """A vendor code table is broken; the message names the file and the code."""


@dataclass(frozen=True)
class VendorTable:
    brand: str
    appliance: str
    faults: dict[str, str]  # code -> canonical fault
    ignored: dict[str, str]  # code -> why it is no fault
    source: str


@dataclass(frozen=True)
class VendorCodes:
    tables: dict[tuple[str, str], VendorTable]  # (brand in lower case, appliance) -> table

    def lookup(self, brand: str, appliance: str, code: str) -> tuple[str | None, str | None]:
        """(canonical fault column, reason it is ignored); both None for an unknown code."""
        table = self.tables.get((brand.lower(), appliance))
        if table is None:
            return None, None
        fault = table.faults.get(code)
        return (COLUMN_PREFIX + fault if fault else None), table.ignored.get(code)

    def faults_by_type(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = {}
        for table in self.tables.values():
            result.setdefault(table.appliance, set()).update(table.faults.values())
        return result


def load_vendor_codes(folder: Path, profiles: dict[str, Profile]) -> VendorCodes:
    tables: dict[tuple[str, str], VendorTable] = {}
    errors: list[str] = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        try:
            table = _parse(yaml_input.load_file(path), str(path), profiles)
        except VendorCodeError as exc:
            errors.append(str(exc))
            continue
        except yaml.YAMLError as exc:
            errors.append(f"{path}: not valid YAML: {exc}")
            continue
        tables[(table.brand.lower(), table.appliance)] = table
    if errors:
        raise VendorCodeError("\n".join(errors))
    return VendorCodes(tables)


def _parse(doc: object, source: str, profiles: dict[str, Profile]) -> VendorTable:
    if not isinstance(doc, dict) or set(doc) - {"brand", "appliance", "codes", "ignore"}:
        raise VendorCodeError(f"{source}: a vendor table has brand, appliance, codes and ignore")
    brand, appliance = doc.get("brand"), doc.get("appliance")
    if not isinstance(brand, str) or appliance not in profiles:
        raise VendorCodeError(f"{source}: needs a brand and an appliance type of {sorted(profiles)}")
    faults: dict[str, str] = {}
    for code, entry in (doc.get("codes") or {}).items():
        fault = entry.get("fault") if isinstance(entry, dict) else None
        sources = entry.get("sources") if isinstance(entry, dict) else None
        if not isinstance(fault, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", fault):
            raise VendorCodeError(f"{source}: code {code!r}: 'fault' must be a snake_case canonical fault")
        if not isinstance(sources, list) or not sources:
            raise VendorCodeError(f"{source}: code {code!r}: every mapping cites at least one public source")
        faults[str(code)] = fault
    ignored = {str(k): str(v) for k, v in (doc.get("ignore") or {}).items()}
    return VendorTable(brand, str(appliance), faults, ignored, source)


def with_code_columns(profiles: dict[str, Profile], codes: VendorCodes) -> dict[str, Profile]:
    """Profiles with a boolean column per canonical vendor fault of their type."""
    result = dict(profiles)
    for appliance, faults in codes.faults_by_type().items():
        profile = result[appliance]
        extra = tuple(MetricSpec(COLUMN_PREFIX + fault, "bool", 0.0, 1.0, f"vendor code: {fault}", sporadic=True)
                      for fault in sorted(faults) if profile.metric(COLUMN_PREFIX + fault) is None)
        result[appliance] = replace(profile, metrics=profile.metrics + extra)
    return result
