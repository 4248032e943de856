"""Incidents, tickets and the outbox against a real SQLite file."""

from pathlib import Path

import orjson
import pytest

from gateway.clock import FakeClock
from gateway.engine.evaluator import Evaluator
from gateway.incidents.cases import open_incident
from gateway.incidents.episodes import IncidentManager
from gateway.ingest.registry import DeviceRegistry
from gateway.model import CasePolicy, NewEpisode
from gateway.outbox.mapping import incident_fingerprint
from gateway.store.db import Database, StorageError
from gateway.store.window import WindowStore
from tests.unit.helpers import PROFILES, washer_rule

NOW = 1_750_000_000.0


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Database, WindowStore, Evaluator, IncidentManager]:
    db = Database(tmp_path / "gw.db")
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=32)
    registry = DeviceRegistry(set(PROFILES))
    registry.set_meta("w1", {"type": "washer", "brand": "Haier", "model": "EG100", "serial": "S1"})
    evaluator = Evaluator([washer_rule(for_="0s")], store)
    manager = IncidentManager(db, store, registry, "home", FakeClock(NOW))
    yield db, store, evaluator, manager
    db.close()


def open_simple(db: Database, rule_id: str, fingerprint: str, ts: float, queued_at: float,
                payload: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    """Open an incident with a minimal one-finding ticket (the ticket's content is not what these tests check)."""
    finding = {"rule": rule_id}
    return open_incident(db, NewEpisode(rule_id, "1", "d", "fault", ts, ts, fingerprint), finding,
                         lambda findings, key, _at: {**(payload or {"x": 1}), "idempotency_key": key,
                                                     "findings_detail": findings}, queued_at, CasePolicy())


def step(store: WindowStore, evaluator: Evaluator, manager: IncidentManager, ts: float, vibration: float) -> None:
    window = store.windows["washer"]
    window.append(window.row("w1"), ts, {"vibration": vibration, "drum_speed": 1000.0})
    assert manager.handle(evaluator.evaluate()) == []


def test_one_episode_one_ticket_with_diagnosis_and_evidence(parts) -> None:  # type: ignore[no-untyped-def]
    db, store, evaluator, manager = parts
    for i in range(10):
        step(store, evaluator, manager, NOW - 20 + i, 0.5)
    for i in range(5):
        step(store, evaluator, manager, NOW - 10 + i, 3.0)
    [ticket] = db.tickets()
    payload = ticket["payload"]
    assert payload["idempotency_key"] == incident_fingerprint("home", "w1", "shaky", NOW - 10)
    assert payload["appliance"] == {"device_id": "w1", "type": "washer", "brand": "Haier", "model": "EG100",
                                    "serial": "S1", "firmware": "", "site": "home"}
    assert payload["fault"]["code"] == "T-1" and payload["fault"]["title"] == {"en": "Shaky", "zh": "抖动"}
    assert payload["probable_causes"] == [{"cause": "c", "likelihood": 1.0, "reason": "r", "supported_by": ["shaky"]}]
    evidence = payload["evidence"]
    assert evidence["observed"] == [{"quantity": "vibration", "op": ">", "threshold": 2.0, "value": 3.0}]
    assert evidence["rule"]["id"] == "shaky" and evidence["onset_ts"] == NOW - 10
    assert len(evidence["window"]["ts"]) == 11  # all of the window up to detection
    assert evidence["window"]["metrics"]["vibration"][-1] == 3.0
    assert evidence["window"]["metrics"]["vibration"][:2] == [0.5, 0.5]  # float32 0.5 as written, 3 decimals
    assert evidence["window"]["metrics"]["door_locked"] == [None] * 11  # never reported: no number invented
    assert ticket["delivery"] == "queued"
    assert db.outbox_counts()["queued"] == 1


def test_resolve_then_new_episode_opens_a_second_ticket(parts) -> None:  # type: ignore[no-untyped-def]
    db, store, evaluator, manager = parts
    step(store, evaluator, manager, NOW, 3.0)
    step(store, evaluator, manager, NOW + 1, 0.5)
    assert db.open_incidents() == []
    step(store, evaluator, manager, NOW + 2, 3.0)
    assert len(db.tickets()) == 2
    assert manager.opened == 2 and manager.resolved == 1


def test_a_fault_back_before_any_repair_joins_its_open_ticket(parts) -> None:  # type: ignore[no-untyped-def]
    db, store, evaluator, manager = parts
    manager.policy = CasePolicy(reopen_window=3600.0)
    step(store, evaluator, manager, NOW, 3.0)
    step(store, evaluator, manager, NOW + 1, 0.5)
    step(store, evaluator, manager, NOW + 2, 3.0)  # intermittent: back again, nobody has repaired it yet
    assert len(db.tickets()) == 1
    assert manager.opened == 2 and manager.resolved == 1


def test_restart_restores_open_episodes_and_opens_no_duplicate(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db, store, evaluator, manager = parts
    step(store, evaluator, manager, NOW, 3.0)
    # a new gateway process: fresh windows and alert state, same database file
    store2 = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=32)
    evaluator2 = Evaluator([washer_rule(for_="0s")], store2)
    manager2 = IncidentManager(db, store2, DeviceRegistry(set(PROFILES)), "home", FakeClock(NOW))
    assert manager2.restore(evaluator2) == 1
    step(store2, evaluator2, manager2, NOW + 5, 3.0)
    assert len(db.tickets()) == 1
    step(store2, evaluator2, manager2, NOW + 6, 0.5)
    assert db.open_incidents() == []


def test_database_refuses_a_second_open_episode(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    first = open_simple(db, "r", "fp1", NOW, NOW)
    assert first is not None
    assert open_simple(db, "r", "fp2", NOW + 1, NOW) is None
    assert [t["payload"]["idempotency_key"] for t in db.tickets()] == ["fp1"]
    db.close()


def test_delivery_is_scheduled_on_the_gateway_clock_not_the_device_clock(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    device_clock_ahead = NOW + 250  # within the accepted skew
    open_simple(db, "r", "fp1", device_clock_ahead, NOW)
    assert [e.idempotency_key for e in db.due_outbox(NOW, 10)] == ["fp1"]
    db.close()


def test_outbox_lifecycle(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    open_simple(db, "r", "fp1", NOW, NOW)
    [entry] = db.due_outbox(NOW, 10)
    assert entry.idempotency_key == "fp1" and orjson.loads(entry.payload)["x"] == 1
    db.schedule_retry(entry.outbox_id, NOW + 60, "HTTP 500")
    assert db.due_outbox(NOW + 1, 10) == [] and db.next_outbox_due() == NOW + 60
    db.mark_delivered(entry, "SVC-1", NOW + 61)
    assert db.outbox_counts() == {"queued": 0, "sending": 0, "delivered": 1, "dead": 0}
    [ticket] = db.tickets()
    assert ticket["platform_ticket_id"] == "SVC-1" and ticket["attempts"] == 2
    db.close()


def test_unopenable_database_says_where(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="not-a-db"):
        Database(tmp_path / "not-a-db")


def test_data_quality_inhibits_component_faults_and_root_causes_inhibit_symptoms(tmp_path: Path) -> None:
    from dataclasses import replace

    db = Database(tmp_path / "gw.db")
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=32)
    fault = washer_rule(expr="vibration > 2", for_="0s", name="shaky")
    sensor = replace(washer_rule(expr="water_temperature > 90", for_="0s", name="sensor_glitch"),
                     diagnosis=replace(fault.diagnosis, category="data_quality"))
    root = replace(washer_rule(expr="drum_speed > 1500", for_="0s", name="bearing_wear"), inhibits=("shaky",))
    evaluator = Evaluator([fault, sensor, root], store)
    manager = IncidentManager(db, store, DeviceRegistry(set(PROFILES)), "home", FakeClock(NOW),
                              rules=[fault, sensor, root])
    window = store.windows["washer"]
    row = window.row("w1")

    def step(ts: float, **metrics: float) -> list[str]:
        window.append(row, ts, metrics)
        for retry in manager.handle(evaluator.evaluate()):
            evaluator.rearm(retry.rule.rule_id, retry.device_id)
        return sorted(i.rule_id for i in db.open_incidents())

    # the sensor problem and the vibration appear together: only the sensor problem opens a ticket
    assert step(NOW, water_temperature=95.0, vibration=3.0) == ["sensor_glitch"]
    assert manager.inhibited == 1
    assert step(NOW + 1, water_temperature=95.0, vibration=3.0) == ["sensor_glitch"]
    # the sensor recovers; the vibration is still there, so now it is diagnosed
    assert step(NOW + 2, water_temperature=40.0, vibration=3.0) == ["shaky"]
    # a root cause found later does not close the open symptom, but suppresses it once it re-fires
    assert step(NOW + 3, water_temperature=40.0, vibration=0.5, drum_speed=1600.0) == ["bearing_wear"]
    assert step(NOW + 4, water_temperature=40.0, vibration=3.0, drum_speed=1600.0) == ["bearing_wear"]
    assert [t["payload"]["fault"]["category"] for t in db.tickets()] == ["fault", "fault", "data_quality"]
    db.close()


def test_rules_firing_on_one_appliance_share_one_ticket_with_ranked_causes(tmp_path: Path) -> None:
    from gateway.engine.rules import parse_rule_file

    text = """
groups:
  - name: g
    appliance: washer
    rules:
      - alert: unbalanced
        expr: vibration > 2
        diagnosis:
          code: W-1
          title: {en: Unbalanced, zh: 不平衡}
          severity: minor
          causes:
            - {cause: Worn shock absorbers, likelihood: 0.5, reason: vibration at spin}
            - cause: Uneven load
              likelihood: 0.5
              reason: one-sided load
              unless: {expr: "drum_speed < 100", because: the drum is not spinning}
      - alert: motor_strain
        expr: motor_current > 5
        diagnosis:
          code: W-2
          title: {en: Motor strain, zh: 电机负载过大}
          severity: major
          causes:
            - {cause: Worn shock absorbers, likelihood: 0.4, reason: the motor fights the swinging drum}
            - {cause: Motor bearing, likelihood: 0.6, reason: high current at normal load}
"""
    rules, errors = parse_rule_file(text, "g.yaml", PROFILES)
    assert not errors, errors
    db = Database(tmp_path / "gw.db")
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=16)
    evaluator = Evaluator(rules, store)
    manager = IncidentManager(db, store, DeviceRegistry(set(PROFILES)), "home", FakeClock(NOW), rules=rules,
                              group_wait=10.0, context_for=evaluator.device_context)
    window = store.windows["washer"]

    def sample(device: str, ts: float, **metrics: float) -> None:
        window.append(window.row(device), ts, metrics)
        manager.handle(evaluator.evaluate())

    sample("w1", NOW, vibration=3.0, drum_speed=50.0, motor_current=1.0)
    sample("w1", NOW + 1, vibration=3.0, drum_speed=50.0, motor_current=6.0)
    [ticket] = db.tickets()
    payload = ticket["payload"]
    assert payload["fault"]["code"] == "W-2"  # the more severe finding names the ticket
    assert [f["rule"] for f in payload["findings"]] == ["unbalanced", "motor_strain"]
    causes = [(c["cause"], c["supported_by"]) for c in payload["probable_causes"]]
    assert causes[0] == ("Worn shock absorbers", ["unbalanced", "motor_strain"])
    assert ("Uneven load", ["unbalanced"]) not in causes
    assert payload["ruled_out"] == [{"cause": "Uneven load", "because": ["the drum is not spinning"],
                                     "rules": ["unbalanced"], "metrics": ["drum_speed"]}]
    assert db.due_outbox(NOW + 5, 10) == []  # waiting for other rules
    [entry] = db.due_outbox(NOW + 10, 10)
    db.mark_delivered(entry, "SVC-1", NOW + 10)

    sample("w2", NOW + 2, vibration=3.0, drum_speed=800.0)  # another appliance: its own ticket
    assert len(db.tickets()) == 2
    db.close()


def test_a_send_interrupted_by_a_crash_goes_again(tmp_path: Path) -> None:
    db = Database(tmp_path / "gw.db")
    open_simple(db, "r", "fp1", NOW, NOW)
    [entry] = db.due_outbox(NOW, 10)
    db.mark_sending(entry.outbox_id)  # ... and the process dies here
    assert db.due_outbox(NOW, 10) == []
    db.close()
    restarted = Database(tmp_path / "gw.db")
    assert restarted.recover_interrupted_sends() == 1
    assert [e.idempotency_key for e in restarted.due_outbox(NOW, 10)] == ["fp1"]
    restarted.close()


def _disk_full(db: Database, full: bool) -> None:
    """SQLite's own limit on the file's pages: writes fail with SQLITE_FULL ("database or disk is full"), the
    error a full disk gives."""
    pages = db._conn.execute("PRAGMA page_count").fetchone()[0]
    db._conn.execute(f"PRAGMA max_page_count = {pages if full else 2**30}")


def test_a_fault_that_begins_and_ends_while_the_disk_is_full_is_recorded_when_space_returns(
        parts, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    db, store, evaluator, manager = parts
    step(store, evaluator, manager, NOW - 30, 0.5)
    for i in range(60):  # fill the file's free pages, so that the next ticket needs a new one
        open_simple(db, f"filler-{i}", f"filler-{i}", NOW - 100, NOW - 100, {"pad": "x" * 2000})
    _disk_full(db, True)
    for i in range(5):
        step(store, evaluator, manager, NOW - 20 + i, 3.0)  # the fault begins ...
    step(store, evaluator, manager, NOW - 10, 0.5)  # ... and ends, all while the disk is full
    for i in range(20):
        step(store, evaluator, manager, NOW - 9 + i, 0.5 + i * 0.01)
    assert [i.rule_id for i in db.open_incidents() if i.rule_id == "shaky"] == []
    assert len(manager.unwritten) == 2  # its opening and its resolution wait, in order
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.name == "gateway.incidents"]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # said once, not once per sample
    assert manager.write_held() == 0  # still full: nothing is lost by trying
    _disk_full(db, False)
    assert manager.write_held() == 2
    shaky = [t for t in db.tickets() if t["payload"].get("fault", {}).get("code") == "T-1"]
    assert len(shaky) == 1 and shaky[0]["payload"]["idempotency_key"] == incident_fingerprint(
        "home", "w1", "shaky", NOW - 20)  # the onset while the disk was full
    assert manager.opened == 1 and manager.resolved == 1 and not manager.unwritten
