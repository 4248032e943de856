"""The case policy: which ticket a new finding goes on, branch by branch (a pure function, no store)."""

from __future__ import annotations

from gateway.incidents.cases import decide
from gateway.model import Case, CaseAction, CasePolicy

NOW = 1_700_000_000.0
WEEK = 7 * 86400.0
POLICY = CasePolicy(reopen_window=WEEK)


def case(ticket_id: int = 1, *, age: float = 60.0, delivery: str = "queued", firing: bool = False,
         repaired_ago: float | None = None, confirmed: bool = False) -> Case:
    return Case(ticket_id, NOW - age, delivery, firing, None if repaired_ago is None else NOW - repaired_ago, confirmed)


def test_no_case_opens_a_new_ticket() -> None:
    assert decide([], NOW, POLICY).action is CaseAction.NEW_TICKET


def test_a_firing_case_not_yet_sent_is_joined_and_rebuilt() -> None:
    decision = decide([case(firing=True)], NOW, POLICY)
    assert (decision.action, decision.ticket_id, decision.rebuild) == (CaseAction.JOINED, 1, True)
    assert decision.expected_delivery == "queued"


def test_a_firing_case_already_delivered_takes_a_late_finding() -> None:
    decision = decide([case(firing=True, delivery="delivered", age=10 * WEEK)], NOW, POLICY)
    assert (decision.action, decision.rebuild) == (CaseAction.LATE_FINDING, False)


def test_a_case_being_sent_is_not_rebuilt() -> None:
    decision = decide([case(firing=True, delivery="sending")], NOW, POLICY)
    assert (decision.action, decision.rebuild, decision.expected_delivery) == (CaseAction.LATE_FINDING, False,
                                                                                "sending")


def test_an_intermittent_fault_back_before_any_repair_joins_its_recent_ticket() -> None:
    decision = decide([case(delivery="delivered", age=3600)], NOW, POLICY)
    assert (decision.action, decision.ticket_id) == (CaseAction.LATE_FINDING, 1)


def test_an_unrepaired_ticket_older_than_the_window_is_not_rejoined() -> None:
    assert decide([case(delivery="delivered", age=WEEK + 1)], NOW, POLICY).action is CaseAction.NEW_TICKET


def test_a_confirmed_ticket_is_never_rejoined_without_a_repair() -> None:
    assert decide([case(delivery="delivered", confirmed=True)], NOW, POLICY).action is CaseAction.NEW_TICKET


def test_a_fault_back_soon_after_its_repair_reopens_the_ticket() -> None:
    decision = decide([case(delivery="delivered", age=2 * WEEK, repaired_ago=3600)], NOW, POLICY)
    assert (decision.action, decision.ticket_id, decision.reopens) == (CaseAction.REOPENED, 1, True)


def test_a_fault_back_long_after_its_repair_opens_a_new_ticket() -> None:
    decision = decide([case(delivery="delivered", age=3 * WEEK, repaired_ago=WEEK + 1)], NOW, POLICY)
    assert decision.action is CaseAction.NEW_TICKET


def test_a_repaired_case_still_firing_takes_the_finding_without_reopening() -> None:
    decision = decide([case(delivery="delivered", firing=True, repaired_ago=60)], NOW, POLICY)
    assert decision.action is CaseAction.LATE_FINDING and not decision.reopens


def test_the_newest_open_case_wins() -> None:
    decision = decide([case(1, firing=True, delivery="delivered"), case(2, firing=True)], NOW, POLICY)
    assert decision.ticket_id == 2 and decision.action is CaseAction.JOINED


def test_without_a_reopen_window_only_firing_cases_are_joined() -> None:
    assert decide([case(delivery="delivered", repaired_ago=1)], NOW, CasePolicy()).action is CaseAction.NEW_TICKET
    assert decide([case(firing=True)], NOW, CasePolicy()).action is CaseAction.JOINED


def test_the_store_refuses_a_decision_on_a_case_the_sender_took_and_the_finding_is_decided_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gateway.incidents.cases import open_incident
    from gateway.model import NewEpisode
    from gateway.store.db import Database

    db = Database(tmp_path / "gw.db")

    def build(findings, key, opened_at):  # type: ignore[no-untyped-def]
        return {"idempotency_key": key, "opened_at": opened_at, "findings_detail": findings}

    first = open_incident(db, NewEpisode("a", "1", "d", "fault", NOW, NOW, "k-a"), {"rule": "a"}, build, NOW, POLICY)
    assert first is not None
    second = NewEpisode("b", "1", "d", "fault", NOW + 1, NOW + 1, "k-b")
    stale = decide(db.cases("d", "fault"), NOW + 1, POLICY)
    assert stale.action is CaseAction.JOINED
    [entry] = db.due_outbox(NOW + 100, 10)
    db.mark_sending(entry.outbox_id)  # the sender took the ticket after the decision was made
    assert db.apply_case(stale, second, {"rule": "b"}, build([{"rule": "b"}], "k-a", NOW), NOW + 1) is None
    opened = open_incident(db, second, {"rule": "b"}, build, NOW + 1, POLICY)
    assert opened is not None and opened.action is CaseAction.LATE_FINDING and opened.ticket_id == first.ticket_id
    assert db.ticket_payload(first.ticket_id)["findings_detail"] == [{"rule": "a"}]  # the ticket being sent is intact
    db.close()


def test_a_finding_after_delivery_reaches_the_platform_as_a_step(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The sealed ticket never changes; the late finding goes upstream through the outbox, once."""
    from gateway.incidents.cases import open_incident
    from gateway.model import NewEpisode
    from gateway.store.db import Database, OutboxKind

    db = Database(tmp_path / "gw.db")

    def build(findings, key, opened_at):  # type: ignore[no-untyped-def]
        return {"idempotency_key": key, "opened_at": opened_at, "findings_detail": findings}

    first = open_incident(db, NewEpisode("fan", "1", "ac", "fault", NOW, NOW, "k-fan"), {"rule": "fan"}, build, NOW,
                          POLICY)
    assert first is not None
    [entry] = db.due_outbox(NOW + 100, 10)
    db.mark_delivered(entry, "SVC-1", NOW + 1)
    finding = {"rule": "leak", "code": "AC-LEAK", "title": {"en": "Leak", "zh": "泄漏"}, "severity": "major",
               "evidence": {"observed": [{"quantity": "superheat", "value": 14.0, "op": ">", "threshold": 10.0}]},
               "causes": [{"cause": "Refrigerant leak"}], "service_items": ["ac_leak_repair"]}
    late = open_incident(db, NewEpisode("leak", "1", "ac", "fault", NOW + 50, NOW + 60, "k-leak"), finding, build,
                         NOW + 60, POLICY)
    assert late is not None and late.action is CaseAction.LATE_FINDING and late.ticket_id == first.ticket_id
    [step] = [e for e in db.due_outbox(NOW + 100, 10) if e.kind is OutboxKind.STEP]
    assert step.platform_ticket_id == "SVC-1"
    import orjson
    body = orjson.loads(step.payload)
    assert body["step"] == "finding_added" and body["event_id"] == "k-leak:finding_added"
    assert body["detail"]["code"] == "AC-LEAK" and body["detail"]["observed"][0]["quantity"] == "superheat"
    assert body["detail"]["service_items"] == ["ac_leak_repair"]
    assert [s.step for s in db.steps(first.ticket_id)][-1] == "finding_added"
    db.close()


def test_the_same_fault_flapping_on_a_sent_ticket_is_not_sent_again_and_again(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A sensor that goes silent and comes back every few minutes: each episode is an incident on the ticket,
    but the platform hears of that fault once (the ticket), and of a different one once (a finding_added)."""
    from gateway.incidents.cases import open_incident
    from gateway.model import NewEpisode
    from gateway.store.db import Database, OutboxKind

    db = Database(tmp_path / "gw.db")

    def build(findings, key, opened_at):  # type: ignore[no-untyped-def]
        return {"idempotency_key": key, "opened_at": opened_at, "findings_detail": findings}

    first = open_incident(db, NewEpisode("silent", "1", "dw", "data_quality", NOW, NOW, "k-0"), {"rule": "silent"},
                          build, NOW, POLICY)
    assert first is not None
    [entry] = db.due_outbox(NOW + 100, 10)
    db.mark_delivered(entry, "SVC-1", NOW + 1)
    for flap in range(1, 30):
        assert db.resolve_incident("silent", "dw", NOW + 100 * flap)
        again = open_incident(db, NewEpisode("silent", "1", "dw", "data_quality", NOW + 100 * flap + 50,
                                             NOW + 100 * flap + 50, f"k-{flap}"), {"rule": "silent"}, build,
                              NOW + 100 * flap + 50, POLICY)
        assert again is not None and again.ticket_id == first.ticket_id
    other = open_incident(db, NewEpisode("stale", "1", "dw", "data_quality", NOW + 4000, NOW + 4000, "k-stale"),
                          {"rule": "stale"}, build, NOW + 4000, POLICY)
    assert other is not None and other.ticket_id == first.ticket_id
    steps = [e for e in db.due_outbox(NOW + 10_000, 100) if e.kind is OutboxKind.STEP]
    assert len(steps) == 1, "one finding_added, for the other fault"
    [row] = [t for t in db.tickets() if t["ticket_id"] == first.ticket_id]
    assert row["late_findings"] == ["stale"]
    db.close()


def test_a_finding_never_joins_a_ticket_the_platform_refused_for_good() -> None:
    for firing in (True, False):
        decision = decide([case(firing=firing, delivery="dead")], NOW, POLICY)
        assert (decision.action, decision.ticket_id) == (CaseAction.NEW_TICKET, None)
