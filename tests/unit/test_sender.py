import random

from gateway.outbox.sender import backoff_seconds, classify


def test_success_carries_the_platform_ticket_id() -> None:
    outcome = classify(201, {"ticket_id": "SVC-7"}, None)
    assert outcome.delivered and outcome.platform_ticket_id == "SVC-7"
    assert classify(200, {"ticket_id": "SVC-7"}, None).delivered  # a repeat of an accepted ticket


def test_server_errors_and_throttling_are_retried() -> None:
    for status in (500, 502, 503, 408, 429):
        outcome = classify(status, None, None)
        assert not outcome.delivered and outcome.retry, status
    assert classify(503, None, "7").retry_after == 7.0
    assert classify(503, None, "Wed, 21 Oct 2015 07:28:00 GMT").retry_after is None


def test_other_client_errors_are_dead_lettered_with_the_reason() -> None:
    outcome = classify(422, {"error": "fault.code is required"}, None)
    assert not outcome.delivered and not outcome.retry
    assert outcome.detail == "HTTP 422 fault.code is required"


def test_backoff_grows_is_jittered_and_bounded() -> None:
    rng = random.Random(1)
    ceilings = [max(backoff_seconds(n, 1.0, 60.0, rng) for _ in range(200)) for n in range(10)]
    assert ceilings[0] <= 1.0 + 1e-9
    assert 3.0 < ceilings[3] <= 8.0
    assert all(c <= 60.0 for c in ceilings)
    samples = {round(backoff_seconds(5, 1.0, 60.0, rng), 6) for _ in range(20)}
    assert len(samples) > 10  # jittered, not one fixed delay


def test_an_authentication_refusal_is_a_state_of_the_link_not_a_verdict_on_the_ticket() -> None:
    for status in (401, 403):
        outcome = classify(status, {"error": "missing or wrong bearer token"}, None)
        assert not outcome.delivered and outcome.retry and outcome.auth_refused, status
        assert outcome.detail == f"HTTP {status} missing or wrong bearer token"
    assert not classify(422, None, None).auth_refused
