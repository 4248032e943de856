"""Which devices the registry hands to each database write: changes of identity and state at once, reports
only in bounded turns, the longest waiting first (pure logic)."""

from __future__ import annotations

from gateway.ingest.registry import DeviceRegistry

META = {"type": "washer", "brand": "b", "model": "m", "serial": "s", "firmware": "1"}


def fleet(count: int) -> DeviceRegistry:
    registry = DeviceRegistry({"washer"})
    for i in range(count):
        registry.set_meta(f"w{i:05d}", META)
        registry.seen(f"w{i:05d}", 100.0)
    registry.take_changed()  # the fleet as saved at start
    return registry


def test_reports_are_saved_in_bounded_turns_longest_waiting_first_and_changes_of_state_at_once() -> None:
    registry = fleet(2_500)
    for i in range(2_500):
        registry.seen(f"w{i:05d}", 200.0)
    registry.set_online("w02400", False)  # a change of state waits for no turn
    first = registry.take_changed(1_000)
    assert [d.device_id for d in first] == ["w02400"] + [f"w{i:05d}" for i in range(999)]
    for i in range(10):
        registry.seen(f"w{i:05d}", 300.0)  # saved already: back at the end of the line
    second = registry.take_changed(1_000)
    assert [d.device_id for d in second] == [f"w{i:05d}" for i in range(999, 1_999)]
    rest = registry.take_changed(1_000)
    assert [d.device_id for d in rest] == ([f"w{i:05d}" for i in range(1_999, 2_500) if i != 2_400]
                                           + [f"w{i:05d}" for i in range(10)])
    assert registry.take_changed(1_000) == []
    assert all(d.last_seen == 300.0 for d in rest[-10:]), "a device is saved as it is when its turn comes"


def test_without_a_limit_every_changed_device_is_taken_as_at_stop() -> None:
    registry = fleet(1_500)
    for i in range(1_500):
        registry.seen(f"w{i:05d}", 200.0)
    registry.set_meta("w99999", META)  # a new appliance
    taken = registry.take_changed()
    assert len(taken) == 1_501 and taken[0].device_id == "w99999"
    assert registry.take_changed() == []
