"""The canonical records that flow between rooms. Frozen so no stage can edit what another produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Reading:
    """One telemetry sample: a device, the time it was taken (epoch s) and its metric values."""

    device_id: str
    ts: float
    metrics: dict[str, float]
    appliance_type: str


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """A vendor error or state code reported by the appliance itself."""

    device_id: str
    ts: float
    code: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceMeta:
    """Identity an appliance announces about itself (retained `meta` topic)."""

    appliance_type: str
    brand: str = ""
    model: str = ""
    serial: str = ""
    firmware: str = ""


@dataclass(slots=True)
class Device:
    """What the gateway knows of one appliance right now (mutable: it changes with every message)."""

    device_id: str
    meta: DeviceMeta | None = None
    online: bool | None = None
    last_seen: float | None = None


class IncidentState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Observation:
    """One comparison of a rule at the moment it fired: what was measured against what limit."""

    quantity: str
    op: str
    threshold: float
    value: float


@dataclass(frozen=True, slots=True)
class Cause:
    cause: str
    likelihood: float
    reason: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """What a rule says about a fault: shown to the home owner and the technician before anyone visits."""

    code: str
    title_en: str
    title_zh: str
    severity: str
    category: str
    causes: tuple[Cause, ...]
    checks: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    explanation_en: str = ""
    explanation_zh: str = ""
    service_items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Incident:
    """One fault episode of one rule on one device; `fingerprint` is the ticket's idempotency key."""

    incident_id: int
    fingerprint: str
    rule_id: str
    device_id: str
    onset_ts: float
    detected_ts: float
    state: IncidentState
    resolved_ts: float | None = None


# --- cases: which ticket a finding goes on (policy in incidents/cases.py, applied by the store) ---------

class CaseAction(StrEnum):
    NEW_TICKET = "new_ticket"
    JOINED = "joined"  # added to a ticket not yet sent
    LATE_FINDING = "late_finding"  # recorded with a ticket already delivered
    REOPENED = "reopened"  # the fault came back within the reopen window of a repaired ticket


@dataclass(frozen=True, slots=True)
class Case:
    """What the policy needs to know of one ticket of (device, category)."""

    ticket_id: int
    created_at: float  # gateway clock
    delivery: str  # queued | sending | delivered | dead
    firing: bool  # one of its episodes is still firing
    repaired_at: float | None  # its newest `repaired` step
    confirmed: bool  # the customer confirmed the repair


@dataclass(frozen=True, slots=True)
class CasePolicy:
    reopen_window: float = 0.0  # seconds: a fault back this soon after a repair (or an unrepaired ticket) rejoins


@dataclass(frozen=True, slots=True)
class Decision:
    action: CaseAction
    ticket_id: int | None = None  # None: a new ticket
    rebuild: bool = False  # the ticket is still queued: its payload is rebuilt with the new finding
    expected_delivery: str = ""  # the case's delivery state the decision was made on

    @property
    def reopens(self) -> bool:
        return self.action is CaseAction.REOPENED


@dataclass(frozen=True, slots=True)
class NewEpisode:
    rule_id: str
    rule_version: str
    device_id: str
    category: str
    onset_ts: float  # appliance time
    detected_ts: float  # appliance time
    fingerprint: str
