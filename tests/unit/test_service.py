"""The service desk against a real SQLite file: validation of platform steps, visit codes, charges,
verification by telemetry and reopening."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import FakeClock
from gateway.config import ServiceConfig
from gateway.incidents.cases import open_incident
from gateway.model import CaseAction, CasePolicy, NewEpisode
from gateway.service import signing
from gateway.service.charges import charge_flags
from gateway.service.timeline import ServiceDesk, ServiceError, visit_code_digest
from gateway.store.db import Database

NOW = 1_750_000_000.0
KEY = b"k" * 32
QUOTE = {"currency": "CNY", "items": [{"id": "fan_motor", "band": [330, 670]}]}


class Appliance:
    last_seen: float | None = NOW


@pytest.fixture
def desk(tmp_path: Path) -> tuple[Database, ServiceDesk, FakeClock, Appliance]:
    db = Database(tmp_path / "gw.db")
    clock = FakeClock(NOW)
    appliance = Appliance()
    service = ServiceDesk(db, clock, ServiceConfig(verification_dwell_seconds=600, reopen_window_seconds=3600,
                                                   visit_code_attempts=3), lambda _d: appliance.last_seen,
                          KEY)
    yield db, service, clock, appliance
    db.close()


def open_case(db: Database, key: str, at: float, rule: str = "fan") -> tuple[int, CaseAction]:
    opened = open_incident(db, NewEpisode(rule, "1", "ac-1", "fault", at, at, key), {"rule": rule, "code": "AC-1"},
                           lambda findings, k, _at: {"idempotency_key": k, "price": QUOTE,
                                                     "findings_detail": findings}, at, CasePolicy(3600))
    assert opened is not None
    return opened.ticket_id, opened.action


def deliver(db: Database, platform_id: str = "SVC-1") -> None:
    [entry] = db.due_outbox(NOW + 10**6, 10)
    db.mark_delivered(entry, platform_id, NOW)


def event(step: str, detail: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {"event_id": f"e-{step}", "ticket_id": "SVC-1", "step": step, "at": NOW, "detail": detail, **changes}


TECHNICIAN = {"name": "Wang Fang", "employee_id": "T-1", "photo_sha256": "a" * 64}


def assign(service: ServiceDesk, code: str = "123456") -> None:
    service.apply_platform_event(event("technician_assigned", {
        "technician": TECHNICIAN, "visit_code_sha256": visit_code_digest("SVC-1", code)}), "webhook")


def test_first_steps_are_written_with_the_ticket_and_acceptance_on_delivery(desk) -> None:  # type: ignore[no-untyped-def]
    db, service, _, _ = desk
    ticket_id, action = open_case(db, "k1", NOW)
    assert action is CaseAction.NEW_TICKET
    assert service.timeline(ticket_id)["state"] == "ticket_opened"
    deliver(db)
    steps = service.timeline(ticket_id)["steps"]
    assert [s["step"] for s in steps] == ["detected", "diagnosed", "ticket_opened", "accepted"]
    assert steps[-1]["detail"] == {"platform_ticket_id": "SVC-1"} and steps[-1]["actor"] == "platform"


@pytest.mark.parametrize(("bad", "reason"), [
    ("not an object", "an event is a JSON object"),
    (event("teleported", {}), "step must be one of"),
    (event("confirmed", {"rating": 5}, event_id=""), "event_id must be"),
    (event("confirmed", {"rating": 5}, at=math.nan), "at must be a unix time"),
    (event("confirmed", {"rating": 5}, at=NOW + 10 * 86400), "at must be a unix time"),
    (event("confirmed", {"rating": 5}, at="yesterday"), "at must be a unix time"),
    (event("confirmed", {"rating": 5}, ticket_id="SVC-404"), "no ticket here"),
    (event("confirmed", {"rating": 6}), "rating must be a whole number from 1 to 5"),
    (event("confirmed", "five"), "detail must be a JSON object"),
    (event("technician_assigned", {"technician": {"name": "X"}}), "technician needs name"),
    (event("technician_assigned", {"technician": TECHNICIAN, "visit_code_sha256": "123456"}), "64 lower-case hex"),
    (event("repaired", {"items": [{"id": "fan_motor", "price": "cheap"}]}), "items must be a list"),
    (event("repaired", {"items": [{"id": "fan_motor", "price": math.inf}]}), "items must be a list"),
])
def test_bad_platform_steps_are_refused_with_the_reason(desk, bad: Any, reason: str) -> None:  # type: ignore[no-untyped-def]
    db, service, _, _ = desk
    ticket_id, _ = open_case(db, "k1", NOW)
    deliver(db)
    with pytest.raises(ServiceError, match=reason):
        service.apply_platform_event(bad, "webhook")
    assert service.events_rejected == 1
    assert service.timeline(ticket_id)["state"] == "accepted", "nothing recorded"


def test_a_step_seen_by_webhook_and_by_poll_counts_once(desk) -> None:  # type: ignore[no-untyped-def]
    db, service, _, _ = desk
    ticket_id, _ = open_case(db, "k1", NOW)
    deliver(db)
    assign(service)
    assert service.apply_platform_event(event("technician_assigned", {
        "technician": TECHNICIAN, "visit_code_sha256": visit_code_digest("SVC-1", "123456")}), "poll") is False
    assert [s["step"] for s in service.timeline(ticket_id)["steps"]].count("technician_assigned") == 1
    assert service.events_duplicate == 1
    service.enter_visit_code(ticket_id, "123456")
    assign(service)  # polled again after the visit: must not hand out a fresh, unused code
    assert service.timeline(ticket_id)["visit_code"]["verified"] is True


def test_the_visit_code_works_once_and_locks_after_too_many_wrong_tries(desk) -> None:  # type: ignore[no-untyped-def]
    db, service, _, _ = desk
    ticket_id, _ = open_case(db, "k1", NOW)
    with pytest.raises(ServiceError, match="no technician has been assigned"):
        service.enter_visit_code(ticket_id, "123456")
    deliver(db)
    assign(service, "123456")
    for left in (2, 1):
        with pytest.raises(ServiceError, match=f"{left} attempt"):
            service.enter_visit_code(ticket_id, "654321")
    assert service.enter_visit_code(ticket_id, " 123456 ") == TECHNICIAN
    with pytest.raises(ServiceError, match="already used") as used:
        service.enter_visit_code(ticket_id, "123456")
    assert used.value.status == 409
    assert [e["step"] for e in db.outbox_entries() if e["kind"] == "step"] == ["technician_verified"]

    db.save_visit_code(ticket_id, visit_code_digest("SVC-1", "111111"), TECHNICIAN)  # a new assignment
    for _ in range(3):
        with pytest.raises(ServiceError):
            service.enter_visit_code(ticket_id, "000000")
    with pytest.raises(ServiceError, match="locked after 3 wrong codes") as locked:
        service.enter_visit_code(ticket_id, "111111")
    assert locked.value.status == 423


def test_the_database_alone_does_not_give_the_visit_code_away(desk) -> None:  # type: ignore[no-untyped-def]
    """The bare SHA-256 the platform sends was stored: 10**6 guesses (half a second) found the code. The database
    keeps an HMAC under the gateway key, which lives outside it."""
    db, service, _, _ = desk
    ticket_id, _ = open_case(db, "k1", NOW)
    deliver(db)
    assign(service, "123456")
    stored = db.visit_code(ticket_id)["digest"]
    assert stored != visit_code_digest("SVC-1", "123456")
    assert not any(stored.endswith(visit_code_digest("SVC-1", f"{guess:06d}")) for guess in range(120000, 130000))
    other_key = ServiceDesk(db, service.clock, service.config, service.last_seen, b"x" * 32)
    with pytest.raises(ServiceError, match="wrong visit code"):
        other_key.enter_visit_code(ticket_id, "123456")
    assert service.enter_visit_code(ticket_id, "123456") == TECHNICIAN


def test_charges_are_checked_against_the_diagnosis_and_the_price_band() -> None:
    assert charge_flags(QUOTE, [{"id": "fan_motor", "price": 500}], "") == []
    [above] = charge_flags(QUOTE, [{"id": "fan_motor", "price": 900}], "")
    assert above["problem"] == "fan_motor charged 900 CNY, above its published band 330-670"
    [extra] = charge_flags(QUOTE, [{"id": "compressor", "price": 2000}], "")
    assert extra == {"item": "compressor", "price": 2000.0, "problem": "compressor was charged (2000 CNY) but not "
                     "diagnosed", "explained": False}
    [explained] = charge_flags(QUOTE, [{"id": "compressor", "price": 2000}], "photo 3f2a: burnt windings")
    assert explained["explained"] is True


def repaired(clock: FakeClock, service: ServiceDesk, at: float) -> None:
    clock.set(at)
    service.apply_platform_event(event("repaired", {"items": [{"id": "fan_motor", "price": 400}]}, at=at),
                                 "webhook")


def test_a_repair_is_verified_only_after_the_dwell_with_the_rule_clear_and_the_appliance_reporting(desk) -> None:  # type: ignore[no-untyped-def]
    db, service, clock, appliance = desk
    ticket_id, _ = open_case(db, "k1", NOW)
    deliver(db)
    repaired(clock, service, NOW + 100)
    clock.set(NOW + 800)
    appliance.last_seen = NOW + 799
    assert service.verify_repairs() == 0, "the rule is still firing"
    db.resolve_incident("fan", "ac-1", NOW + 300)
    clock.set(NOW + 850)
    assert service.verify_repairs() == 0, "clear for 550 s of a 600 s dwell"
    clock.set(NOW + 2000)
    appliance.last_seen = NOW + 1000
    assert service.verify_repairs() == 0, "silent for 1000 s: nothing verifies the repair"
    appliance.last_seen = NOW + 1999
    assert service.verify_repairs() == 1
    assert service.verify_repairs() == 0, "verified once"
    timeline = service.timeline(ticket_id)
    assert timeline["state"] == "verified_by_telemetry"
    assert timeline["steps"][-1]["detail"]["rules"] == ["fan"]


def test_the_fault_back_within_the_window_reopens_after_it_a_new_ticket(desk) -> None:  # type: ignore[no-untyped-def]
    db, service, clock, _ = desk
    ticket_id, _ = open_case(db, "k1", NOW)
    deliver(db)
    db.resolve_incident("fan", "ac-1", NOW + 50)
    repaired(clock, service, NOW + 100)
    again, action = open_case(db, "k2", NOW + 1000)
    assert (again, action) == (ticket_id, CaseAction.REOPENED)
    assert service.timeline(ticket_id)["state"] == "reopened"
    db.resolve_incident("fan", "ac-1", NOW + 1100)
    later, action = open_case(db, "k3", NOW + 100 + 3601)
    assert action is CaseAction.NEW_TICKET and later != ticket_id


def verified(db: Database, service: ServiceDesk, clock: FakeClock, appliance: Any, at: float) -> None:
    """The rule clears and the appliance reports normally for the dwell: the telemetry verifies the repair."""
    db.resolve_incident("fan", "ac-1", at - 700)
    clock.set(at)
    appliance.last_seen = at - 1
    assert service.verify_repairs() == 1


def test_confirmation_needs_a_repair_its_verification_and_a_rating(desk) -> None:  # type: ignore[no-untyped-def]
    """`ticket confirm` was accepted right after "repaired", and verification never came after it: a customer
    confirms what the telemetry has shown to hold, or says why not."""
    db, service, clock, appliance = desk
    ticket_id, _ = open_case(db, "k1", NOW)
    deliver(db)
    with pytest.raises(ServiceError, match="no repair yet"):
        service.confirm(ticket_id, 5)
    repaired(clock, service, NOW + 100)
    with pytest.raises(ServiceError, match="not verified the repair yet") as refused:
        service.confirm(ticket_id, 5)
    assert refused.value.code == "not_verified" and refused.value.status == 409
    verified(db, service, clock, appliance, NOW + 1500)
    with pytest.raises(ServiceError, match="rating must be"):
        service.confirm(ticket_id, "5")
    service.confirm(ticket_id, 5, "quick and tidy")
    with pytest.raises(ServiceError, match="already confirmed"):
        service.confirm(ticket_id, 4)
    assert db.tickets_to_follow() == [], "a confirmed ticket is no longer polled"


def test_confirming_before_verification_says_why_and_verification_still_comes(desk) -> None:  # type: ignore[no-untyped-def]
    db, service, clock, appliance = desk
    ticket_id, _ = open_case(db, "k1", NOW)
    deliver(db)
    repaired(clock, service, NOW + 100)
    with pytest.raises(ServiceError, match="at most 500"):
        service.confirm(ticket_id, 4, "", "x" * 501)
    service.confirm(ticket_id, 4, "", "moving out today")
    confirmed = service.timeline(ticket_id)["steps"][-1]
    assert confirmed["step"] == "confirmed" and confirmed["detail"]["without_verification"] == "moving out today"
    assert service.timeline(ticket_id)["closed"]
    verified(db, service, clock, appliance, NOW + 1500)
    assert service.timeline(ticket_id)["steps"][-1]["step"] == "verified_by_telemetry"


def test_a_platform_confirmation_before_verification_is_marked_so(desk) -> None:  # type: ignore[no-untyped-def]
    db, service, clock, _ = desk
    ticket_id, _ = open_case(db, "k1", NOW)
    deliver(db)
    repaired(clock, service, NOW + 100)
    service.apply_platform_event(event("confirmed", {"rating": 5}, at=NOW + 200), "webhook")
    assert service.timeline(ticket_id)["steps"][-1]["detail"]["before_verification"] is True


def test_webhook_signatures() -> None:
    body, now = b'{"a":1}', time.time()
    signing.verify("s", body, signing.sign("s", body, now), now + 10)
    refused = [
        (body, signing.sign("other secret", body, now), "does not match"),
        (body + b" ", signing.sign("s", body, now), "does not match"),
        (body, signing.sign("s", body, now - 301), "from now"),
        (body, "sha256=abc", "must look like"),
        (body, None, "missing"),
    ]
    for data, header, reason in refused:
        with pytest.raises(signing.SignatureError, match=reason):
            signing.verify("s", data, header, now)
