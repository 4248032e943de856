import math

import numpy as np

from gateway.store.window import TypeWindow, WindowStore


def test_append_and_latest_keeps_last_known_value() -> None:
    window = TypeWindow("ac", ("a", "b"), slots=4, capacity=2)
    row = window.row("d1")
    window.append(row, 10.0, {"a": 1.0, "b": 2.0})
    window.append(row, 11.0, {"a": 3.0})
    assert window.latest[row].tolist() == [3.0, 2.0]
    assert window.latest_ts[row] == 11.0
    snapshot = window.snapshot("d1")
    assert snapshot.ts.tolist() == [10.0, 11.0]
    assert snapshot.values[0].tolist() == [1.0, 3.0]
    assert math.isnan(snapshot.values[1][1])  # b was not reported in the second sample


def test_ring_wraps_and_snapshot_is_in_time_order() -> None:
    window = TypeWindow("ac", ("a",), slots=3)
    row = window.row("d1")
    for i in range(5):
        window.append(row, float(i), {"a": float(i * 10)})
    snapshot = window.snapshot("d1")
    assert snapshot.ts.tolist() == [2.0, 3.0, 4.0]
    assert snapshot.values[0].tolist() == [20.0, 30.0, 40.0]


def test_out_of_order_sample_goes_into_window_but_not_latest() -> None:
    window = TypeWindow("ac", ("a",), slots=4)
    row = window.row("d1")
    window.append(row, 10.0, {"a": 1.0})
    window.append(row, 5.0, {"a": 9.0})
    assert window.latest[row, 0] == 1.0
    assert window.snapshot("d1").ts.tolist() == [5.0, 10.0]


def test_grows_as_devices_appear_and_keeps_data() -> None:
    window = TypeWindow("ac", ("a",), slots=2, capacity=1)
    for i in range(10):
        window.append(window.row(f"d{i}"), 1.0, {"a": float(i)})
    assert window.capacity >= 10
    assert [window.latest[window.rows[f"d{i}"], 0] for i in range(10)] == [float(i) for i in range(10)]


def test_take_dirty_returns_each_row_once() -> None:
    window = TypeWindow("ac", ("a",), slots=2)
    a, b = window.row("a"), window.row("b")
    window.append(b, 1.0, {"a": 1.0})
    assert window.take_dirty().tolist() == [b]
    assert window.take_dirty().tolist() == []
    window.append(a, 2.0, {"a": 1.0})
    window.append(b, 2.0, {"a": 1.0})
    assert window.take_dirty().tolist() == [a, b]


def test_snapshot_between() -> None:
    store = WindowStore({"ac": ("a",)}, slots=10)
    window = store.windows["ac"]
    row = window.row("d")
    for t in range(10):
        window.append(row, float(t), {"a": float(t)})
    part = store.snapshot("d")
    assert part is not None
    assert part.between(3, 5).ts.tolist() == [3.0, 4.0, 5.0]
    assert store.snapshot("missing") is None
    assert store.memory_bytes() > 0
    assert np.isnan(window.ts[row + 1]).all()
