"""The service desk: every step a ticket goes through after detection, kept in the gateway with time and actor.

detected -> diagnosed -> ticket_opened -> accepted -> technician_assigned -> technician_verified -> repaired
-> verified_by_telemetry -> confirmed, and `reopened` when the fault returns within the verification window.

The gateway writes its own steps; the platform reports technician_assigned, repaired and confirmed by a
signed webhook or, when that cannot reach the home, by polling; both go through `apply_platform_event`, which
is idempotent on the event id. The technician proves who they are on site with a one-time visit code whose
salted digest (never the code) the platform sent with the assignment. Charged items are compared with the
diagnosis and its published prices. A repair counts as verified only when the appliance has reported
normally with every triggering rule clear for the configured dwell.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import re
from collections.abc import Callable
from typing import Any

from gateway.clock import Clock
from gateway.config import ServiceConfig
from gateway.service.charges import charge_flags
from gateway.store.db import Database, Step

log = logging.getLogger("gateway.service")

PLATFORM_STEPS = ("technician_assigned", "repaired", "confirmed")
STEP_TITLES = {
    "detected": ("Fault detected", "检测到故障"),
    "diagnosed": ("Diagnosed", "已诊断"),
    "ticket_opened": ("Ticket opened", "已创建工单"),
    "accepted": ("Accepted by the service platform", "服务平台已受理"),
    "technician_assigned": ("Technician assigned", "已派工程师"),
    "technician_verified": ("Technician verified on site", "工程师身份已核验"),
    "repaired": ("Repaired", "已维修"),
    "verified_by_telemetry": ("Repair verified by telemetry", "运行数据确认修复"),
    "confirmed": ("Confirmed by the customer", "用户已确认"),
    "reopened": ("Fault returned: ticket reopened", "故障复发，工单重开"),
    "finding_added": ("New finding on the appliance", "设备出现新的故障迹象"),
}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
MAX_EVENT_AGE_SECONDS = 365 * 86400.0
MAX_EVENT_AHEAD_SECONDS = 86400.0


class ServiceError(Exception):
    """A step or code that cannot be accepted; `status` is the HTTP answer that says why, `code` names the case
    for a page (pages show a fixed text per code, never text from a URL)."""

    def __init__(self, message: str, status: int = 422, code: str = "rejected") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def visit_code_digest(platform_ticket_id: str, code: str) -> str:
    """What the platform sends instead of the code: salted with the ticket, so one digest fits one visit."""
    return hashlib.sha256(f"visit|{platform_ticket_id}|{code.strip()}".encode()).hexdigest()


KEYED_PREFIX = "k1:"


def stored_visit_code(secret: bytes, digest: str) -> str:
    """What the database keeps of the platform's digest: an HMAC of it under the gateway key (which is not in the
    database). A six-digit code is found from a bare SHA-256 in half a second; from this, not without the key."""
    return KEYED_PREFIX + hmac.new(secret, f"visit-code|{digest}".encode(), hashlib.sha256).hexdigest()


def visit_code_matches(secret: bytes, stored: str, platform_ticket_id: str, code: str) -> bool:
    digest = visit_code_digest(platform_ticket_id, code)
    expected = stored_visit_code(secret, digest) if stored.startswith(KEYED_PREFIX) else digest  # older rows
    return hmac.compare_digest(expected.encode(), stored.encode())


class ServiceDesk:
    def __init__(self, db: Database, clock: Clock, config: ServiceConfig,
                 last_seen: Callable[[str], float | None], secret: bytes) -> None:
        """`secret`: the gateway key, for the visit codes kept in the database."""
        self.db = db
        self.secret = secret
        self.clock = clock
        self.config = config
        self.last_seen = last_seen
        self.events_applied = 0
        self.events_duplicate = 0
        self.events_rejected = 0

    # platform events (webhook or poll) -------------------------------------------------------------------
    def apply_platform_event(self, event: Any, source: str) -> bool:
        """Record one platform step; False if it was already recorded. Raises ServiceError with the reason."""
        if isinstance(event, dict) and self.db.has_event(str(event.get("event_id"))):
            self.events_duplicate += 1  # seen before (webhook and poll both deliver it): no side effects again
            return False
        try:
            ticket_id, step, at, event_id, detail = self._checked_event(event)
            if step == "technician_assigned":
                detail = self._assignment(ticket_id, event["ticket_id"], detail)
            elif step == "repaired":
                detail = self._repair(ticket_id, detail)
            elif step == "confirmed":
                detail = _rating(detail)
                if not repair_verified(self.db.steps(ticket_id)):  # the platform's customer may confirm early
                    detail["before_verification"] = True
        except ServiceError:
            self.events_rejected += 1
            raise
        actor = str(detail.get("actor") or ("customer" if step == "confirmed" else "platform"))
        recorded = self.db.add_step(ticket_id, step, at, actor, source, event_id, detail)
        if recorded:
            self.events_applied += 1
            log.info("ticket %d: %s (%s, by %s)", ticket_id, step, source, actor)
        else:
            self.events_duplicate += 1
        return recorded

    def _checked_event(self, event: Any) -> tuple[int, str, float, str, dict[str, Any]]:
        if not isinstance(event, dict):
            raise ServiceError("an event is a JSON object")
        event_id, step, platform_id = event.get("event_id"), event.get("step"), event.get("ticket_id")
        if not isinstance(event_id, str) or not 0 < len(event_id) <= 128:
            raise ServiceError("event_id must be a string of 1-128 characters")
        if step not in PLATFORM_STEPS:
            raise ServiceError(f"step must be one of {list(PLATFORM_STEPS)}, got {step!r}")
        at = event.get("at")
        now = self.clock.now()
        if (not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at)
                or not now - MAX_EVENT_AGE_SECONDS <= at <= now + MAX_EVENT_AHEAD_SECONDS):
            raise ServiceError(f"at must be a unix time within a year before and a day after now, got {at!r}")
        detail = event.get("detail", {})
        if not isinstance(detail, dict):
            raise ServiceError("detail must be a JSON object")
        ticket_id = self.db.ticket_by_platform_id(str(platform_id)) if isinstance(platform_id, str) else None
        if ticket_id is None:
            raise ServiceError(f"no ticket here was accepted as {platform_id!r}", status=404)
        return ticket_id, step, float(at), event_id, detail

    def _assignment(self, ticket_id: int, platform_id: str, detail: dict[str, Any]) -> dict[str, Any]:
        technician, digest = detail.get("technician"), detail.get("visit_code_sha256")
        if not isinstance(technician, dict) or not all(isinstance(technician.get(k), str) and technician[k]
                                                       for k in ("name", "employee_id", "photo_sha256")):
            raise ServiceError("technician needs name, employee_id and photo_sha256")
        if not _HEX64.match(technician["photo_sha256"]) or not isinstance(digest, str) or not _HEX64.match(digest):
            raise ServiceError("photo_sha256 and visit_code_sha256 must be 64 lower-case hex digits")
        who = {k: technician[k] for k in ("name", "employee_id", "photo_sha256")}
        self.db.save_visit_code(ticket_id, stored_visit_code(self.secret, digest), who)
        return {"technician": who, "platform_ticket_id": platform_id,
                "appointment": str(detail.get("appointment", ""))}

    def _repair(self, ticket_id: int, detail: dict[str, Any]) -> dict[str, Any]:
        items = detail.get("items")
        if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("id"), str) and isinstance(i.get("price"), int | float)
                and not isinstance(i.get("price"), bool) and math.isfinite(i["price"]) and 0 <= i["price"] < 1e6
                for i in items):
            raise ServiceError("items must be a list of {id: string, price: number from 0 to 1e6}")
        new_evidence = detail.get("new_evidence", "")
        if not isinstance(new_evidence, str):
            raise ServiceError("new_evidence must be a string")
        payload = self.db.ticket_payload(ticket_id) or {}
        flags = charge_flags(payload.get("price"), items, new_evidence)
        code = self.db.visit_code(ticket_id)
        if code is None or code["used_at"] is None:
            flags.append({"item": "", "price": 0.0, "explained": False,
                          "problem": "repaired before the technician was verified on site with the visit code"})
        for flag in flags:
            log.warning("ticket %d: %s", ticket_id, flag["problem"])
        return {"items": [{"id": i["id"], "price": float(i["price"])} for i in items],
                "total": sum(float(i["price"]) for i in items), "new_evidence": new_evidence, "flags": flags}

    # steps taken at the gateway ---------------------------------------------------------------------------
    def enter_visit_code(self, ticket_id: int, code: str) -> dict[str, Any]:
        """The technician's code, typed at the gateway: their identity if it matches. One use only."""
        record = self.db.visit_code(ticket_id)
        platform_id = self.db.platform_ticket_id(ticket_id)
        if record is None or platform_id is None:
            raise ServiceError("no technician has been assigned to this ticket yet", status=409, code="no_technician")
        if record["used_at"] is not None:
            raise ServiceError("this visit code was already used; the technician is verified", status=409,
                               code="code_used")
        limit = self.config.visit_code_attempts
        if record["failed_attempts"] >= limit:
            raise ServiceError(f"locked after {limit} wrong codes: ask the platform to assign the visit again",
                               status=423, code="code_locked")
        if not visit_code_matches(self.secret, record["digest"], platform_id, code):
            failed = self.db.visit_code_failed(ticket_id)
            log.warning("ticket %d: wrong visit code entered (%d of %d)", ticket_id, failed, limit)
            raise ServiceError(f"wrong visit code; {max(0, limit - failed)} attempt(s) left", status=403,
                               code="code_wrong")
        now = self.clock.now()
        technician = record["technician"]
        self.db.visit_code_used(ticket_id, "technician_verified", now, "customer",
                                f"{record['digest'][:16]}:technician_verified", {"technician": technician})
        log.info("ticket %d: technician %s (%s) verified on site", ticket_id, technician["name"],
                 technician["employee_id"])
        return dict(technician)

    def confirm(self, ticket_id: int, rating: object, comment: object = "", without_verification: object = "") -> None:
        """The customer confirms the repair and rates it (1-5), at the gateway: once the telemetry has verified it,
        or before that only with a reason (`without_verification`), which the step keeps, so that nobody confirms
        a repair the appliance has not shown to hold by accident."""
        steps = self.db.steps(ticket_id)
        repairs = [s for s in steps if s.step == "repaired"]
        if not repairs:
            raise ServiceError("nothing to confirm: the ticket has no repair yet", status=409, code="no_repair")
        if any(s.step == "confirmed" and s.event_id == f"{repairs[-1].event_id}:confirmed" for s in steps):
            raise ServiceError("this repair was already confirmed", status=409, code="already_confirmed")
        detail = _rating({"rating": rating, "comment": comment})
        if not isinstance(without_verification, str) or len(without_verification) > 500:
            raise ServiceError("the reason for confirming without verification is a text of at most 500 characters")
        if not repair_verified(steps):
            if not without_verification.strip():
                raise ServiceError("the telemetry has not verified the repair yet: wait for it, or confirm without "
                                   "verification and say why", status=409, code="not_verified")
            detail["without_verification"] = without_verification.strip()
        now = self.clock.now()
        if not self.db.add_step(ticket_id, "confirmed", now, "customer", "customer",
                                f"{repairs[-1].event_id}:confirmed", detail, notify=True, now=now):
            raise ServiceError("this repair was already confirmed", status=409, code="already_confirmed")

    def verify_repairs(self) -> int:
        """Add `verified_by_telemetry` where every triggering rule stayed clear for the dwell while the
        appliance kept reporting. Runs on the gateway's timer."""
        now = self.clock.now()
        verified = 0
        for case in self.db.awaiting_verification():
            seen = self.last_seen(case["device_id"])
            if case["firing"] or seen is None or now - seen > self.config.max_silence_seconds:
                continue  # still faulty, or not reporting: nothing verifies a repair on a silent appliance
            clear_since = max(case["repaired_at"], case["last_resolved"] or 0.0)
            if now - clear_since < self.config.verification_dwell_seconds:
                continue
            detail = {"rules": case["rules"], "clear_since": clear_since,
                      "dwell_seconds": self.config.verification_dwell_seconds, "last_seen": seen}
            if self.db.add_step(case["ticket_id"], "verified_by_telemetry", now, "gateway", "gateway",
                                f"{case['repair_event']}:verified", detail, notify=True, now=now):
                verified += 1
                log.info("ticket %d: repair verified, %s clear for %.0f s", case["ticket_id"],
                         ", ".join(case["rules"]), now - clear_since)
        return verified

    # reading ----------------------------------------------------------------------------------------------
    def timeline(self, ticket_id: int) -> dict[str, Any]:
        steps = self.db.steps(ticket_id)
        code = self.db.visit_code(ticket_id)
        flags = [f for s in steps if s.step == "repaired" for f in s.detail.get("flags", [])]
        return {
            "ticket_id": ticket_id,
            "state": steps[-1].step if steps else "unknown",
            "repaired": any(s.step == "repaired" for s in steps),
            "verified": repair_verified(steps),
            "confirmed": repair_confirmed(steps),
            "closed": closed(steps),
            "steps": [_step_view(s) for s in steps],
            "technician": code["technician"] if code else None,
            "visit_code": None if code is None else {
                "verified": code["used_at"] is not None,
                "attempts_left": max(0, self.config.visit_code_attempts - code["failed_attempts"])},
            "charge_flags": flags,
        }


def since_repair(steps: list[Step], step: str) -> bool:
    """Whether `step` came after the newest repair (and the fault has not returned since, which undoes it)."""
    for taken in reversed(steps):
        if taken.step == step:
            return True
        if taken.step in ("repaired", "reopened"):
            return False
    return False


def repair_verified(steps: list[Step]) -> bool:
    return since_repair(steps, "verified_by_telemetry")


def repair_confirmed(steps: list[Step]) -> bool:
    return since_repair(steps, "confirmed")


def closed(steps: list[Step]) -> bool:
    """Confirmed by the customer, and the fault has not returned since: nothing more for a technician to do."""
    return bool(steps) and steps[-1].step == "confirmed"


def _rating(detail: dict[str, Any]) -> dict[str, Any]:
    rating, comment = detail.get("rating"), detail.get("comment", "")
    if not isinstance(rating, int) or isinstance(rating, bool) or not 1 <= rating <= 5:
        raise ServiceError(f"rating must be a whole number from 1 to 5, got {rating!r}", code="bad_rating")
    if not isinstance(comment, str) or len(comment) > 2000:
        raise ServiceError("comment must be a string of at most 2000 characters")
    return {"rating": rating, "comment": comment}


def _step_view(step: Step) -> dict[str, Any]:
    title = STEP_TITLES.get(step.step, (step.step, step.step))
    return {"step": step.step, "title": {"en": title[0], "zh": title[1]}, "at": step.at, "actor": step.actor,
            "source": step.source, "event_id": step.event_id, "detail": step.detail}
