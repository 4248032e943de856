"""QoS 1 repeats: a DUP copy of a message taken in already is dropped; everything else is kept."""

from __future__ import annotations

from gateway.transport.redelivery import Redeliveries


def test_a_dup_copy_of_a_message_taken_in_is_a_repeat() -> None:
    seen = Redeliveries()
    assert not seen.is_repeat("appliances/a/telemetry", b'{"ts": 1}', qos=1, dup=False)
    assert seen.is_repeat("appliances/a/telemetry", b'{"ts": 1}', qos=1, dup=True)
    assert seen.repeats == 1


def test_a_dup_message_never_seen_is_kept_its_first_delivery_was_lost() -> None:
    seen = Redeliveries()
    assert not seen.is_repeat("appliances/a/telemetry", b'{"ts": 2}', qos=1, dup=True)
    assert seen.repeats == 0


def test_the_same_message_sent_again_by_the_appliance_without_dup_is_kept() -> None:
    seen = Redeliveries()
    for _ in range(3):
        assert not seen.is_repeat("appliances/a/event", b'{"code": "E1"}', qos=1, dup=False)


def test_qos_0_is_never_a_repeat_and_another_topic_is_another_message() -> None:
    seen = Redeliveries()
    assert not seen.is_repeat("appliances/a/telemetry", b"x", qos=0, dup=True)
    seen.is_repeat("appliances/a/telemetry", b"x", qos=1, dup=False)
    assert not seen.is_repeat("appliances/b/telemetry", b"x", qos=1, dup=True)


def test_memory_is_bounded_to_the_most_recent_messages() -> None:
    seen = Redeliveries(recent=3)
    for i in range(5):
        seen.is_repeat("t", bytes([i]), qos=1, dup=False)
    assert not seen.is_repeat("t", bytes([0]), qos=1, dup=True), "forgotten: too old to be an in-flight resend"
    assert seen.is_repeat("t", bytes([4]), qos=1, dup=True)
