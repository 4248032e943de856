import math

import numpy as np
import psutil
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store.window import REBASE_SECONDS, TypeWindow, WindowStore
from gateway.store.window import on_time_grid as on_grid


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


def test_a_device_reporting_faster_than_its_profile_keeps_windows_of_the_same_time() -> None:
    """Ten slots at a 2 s profile hold 20 s; a device reporting every 0.5 s filled them in 5 s. Its samples
    now merge into slots an interval apart (each slot's newest value per metric, at its newest time)."""
    window = TypeWindow("washer", ("a", "b"), slots=10, interval=2.0)
    row = window.row("fast")
    for i in range(80):  # 40 s; b only every fourth sample
        window.append(row, i * 0.5, {"a": float(i)} | ({"b": float(i)} if i % 4 == 0 else {}))
    snapshot = window.snapshot("fast")
    assert snapshot.ts[-1] == 39.5 and snapshot.ts[-1] - snapshot.ts[0] >= 17.0  # 4.5 s unmerged
    assert np.all(np.diff(snapshot.ts[:-1]) == 2.0)  # the newest slot is still taking samples
    assert snapshot.values[0].tolist() == (snapshot.ts * 2).tolist()  # a: the newest of each slot
    b = snapshot.values[1]  # reported in 1 of 4 samples: each report since the oldest slot began is kept
    assert b[np.isfinite(b)].tolist() == [44.0 + 4 * k for k in range(9)]
    assert window.latest[row].tolist() == [79.0, 76.0]


@given(st.floats(1.3, 40.0), st.floats(0.0, 0.3), st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_at_any_faster_rate_and_jitter_the_ring_spans_what_it_was_sized_for(factor: float, jitter: float,
                                                                              seed: int) -> None:
    """The class of the example above: 1.3 to 40 times the profile's rate, gaps jittered by up to 30 %. A ring
    of N slots is sized for N / 1.25 intervals; it spans at least that, and the newest sample is the latest."""
    rng = np.random.default_rng(seed)
    window = TypeWindow("washer", ("a",), slots=20, interval=2.0)
    row = window.row("fast")
    gaps = 2.0 / factor * rng.uniform(1 - jitter, 1 + jitter, int(60 * factor))
    for i, t in enumerate(np.cumsum(gaps)):
        window.append(row, float(t), {"a": float(i)})
    ts = window.snapshot("fast").ts
    assert ts[-1] - ts[0] >= (20 - 1) * 2.0 / 1.25
    assert ts[-1] == on_grid(np.cumsum(gaps)[-1]) and window.latest[row, 0] == len(gaps) - 1


def test_a_device_at_its_profiles_rate_never_merges_jitter_and_all() -> None:
    window = TypeWindow("washer", ("a",), slots=10, interval=2.0)
    row = window.row("steady")
    ts = np.cumsum(np.resize([1.7, 2.3, 2.0, 1.65, 2.35], 30))
    for i, t in enumerate(ts):
        window.append(row, float(t), {"a": float(i)})
    assert window.snapshot("steady").ts.tolist() == on_grid(ts[-10:]).tolist()


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
    row, other = window.row("d"), window.row("other")
    for t in range(10):
        window.append(row, float(t), {"a": float(t)})
    part = store.snapshot("d")
    assert part is not None
    assert part.between(3, 5).ts.tolist() == [3.0, 4.0, 5.0]
    assert store.snapshot("missing") is None
    assert store.memory_bytes() > 0
    assert np.isnan(window.ts[other]).all()


def _window() -> TypeWindow:
    """Jump-watched, event and plain columns, a short ring, a silence limit: every path of an append."""
    return TypeWindow("ac", ("a", "b", "code_x"), slots=5, capacity=2, max_steps={"a": 2.0},
                      event_columns=("code_x",), interval=2.0, silence_limit=30.0, max_gap=10.0)


metric_sets = st.dictionaries(st.sampled_from(("a", "b", "code_x")), st.floats(-50, 50), min_size=1)
# times over three rebases (REBASE_SECONDS), in any order: late samples far behind a moved base included
samples = st.lists(st.tuples(st.integers(0, 5), st.floats(0, 3 * REBASE_SECONDS), metric_sets), max_size=40)


@given(samples)
@settings(max_examples=150, deadline=None)
def test_a_batch_leaves_the_window_as_the_same_samples_one_by_one(stream: list[tuple[int, float, dict[str, float]]],
                                                                   ) -> None:
    """Batch ingest (one append_many per run of distinct devices) changes the cost, never the state: late and
    duplicate samples, jumps, events, gaps and a growing row count included."""
    one_by_one, batched = _window(), _window()
    for device, ts, metrics in stream:
        one_by_one.append(one_by_one.row(f"d{device}"), ts, metrics)
    run: list[tuple[int, float, dict[str, float]]] = []

    def flush() -> None:
        batched.append_many(np.array([r for r, _, _ in run], dtype=np.intp),
                            np.array([t for _, t, _ in run], dtype=np.float64), [m for _, _, m in run])
        run.clear()
    for device, ts, metrics in stream:
        row = batched.row(f"d{device}")
        if any(r == row for r, _, _ in run):  # a device's second sample: the run so far goes in first
            flush()
        run.append((row, ts, metrics))
    if run:
        flush()
    taken = len(one_by_one.device_ids)  # the rows no device took are unwritten memory (`_allocate`)
    for mine, theirs in zip(one_by_one.arrays(), batched.arrays(), strict=True):
        np.testing.assert_array_equal(mine[:taken], theirs[:taken])
    assert one_by_one.newest_ts == batched.newest_ts


def test_a_large_store_grows_by_a_quarter_not_by_doubling() -> None:
    window = TypeWindow("ac", ("a",), slots=2, capacity=64)
    for i in range(9_000):
        window.row(f"d{i}")
    assert 9_000 <= window.capacity <= 9_000 * 1.25 + 64, window.capacity  # doubling had 16,384


def test_a_row_a_device_takes_starts_empty_whatever_its_memory_held() -> None:
    window = TypeWindow("ac", ("a", "b"), slots=4, capacity=2, long_columns=("a",), long_slots=8)
    window.append(window.row("first"), 1.0, {"a": 1.0, "b": 2.0})
    for ring in window.rings():
        ring[1:] = 7.0  # what reused memory may hold in the rows no device has taken
    row = window.row("second")
    assert all(np.isnan(ring[row]).all() for ring in window.rings())
    assert window.snapshot("second").ts.size == 0
    grown = [window.row(f"d{i}") for i in range(5)]  # past the capacity: the arrays grow
    assert window.capacity > 2
    assert all(np.isnan(ring[grown]).all() for ring in window.rings())
    assert window.snapshot("first").ts.tolist() == [1.0]  # the rows taken before keep their samples
    assert window.snapshot("first").values[:, 0].tolist() == [1.0, 2.0]


def _resident_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def test_the_rows_held_for_growth_take_no_resident_memory() -> None:
    """An air conditioner's rings at 6,000 rows are 230 MB: only the rows devices took are written."""
    before = _resident_bytes()
    window = TypeWindow("ac", tuple(f"m{i}" for i in range(21)), slots=414, capacity=6_000)
    for i in range(100):
        window.append(window.row(f"d{i}"), 1.0, {"m0": 1.0})
    ring_bytes = sum(ring.nbytes for ring in window.rings())
    grew = _resident_bytes() - before
    assert ring_bytes > 200e6
    assert grew < 40e6, f"{grew / 1e6:.0f} MB resident for 100 of 6,000 rows"


@given(st.floats(2.0, 9.0), st.floats(0.0, 0.4), st.floats(0.0, 86_400.0), st.integers(0, 2**16))
@settings(max_examples=15, deadline=None)
def test_a_ring_holds_its_samples_times_exactly_however_long_the_device_reports(
        interval: float, jitter: float, behind: float, seed: int) -> None:
    """Ring times are float32 offsets from a base that moves with each device: over hours of reporting (the
    base moving on several times), at any rate, jitter and clock (a second device's up to a day behind), the
    ring gives back each sample's time as the window holds it, the newest is the device's latest, and the long
    ring agrees."""
    rng = np.random.default_rng(seed)
    window = TypeWindow("ac", ("a",), slots=16, capacity=2, interval=interval, long_columns=("a",), long_slots=48)
    start = 1_760_000_000.0 + rng.uniform(0, 1)
    count = int(5 * REBASE_SECONDS / interval)  # past 2**14 s, where offsets from one base lose the grid
    times = start + np.cumsum(interval * rng.uniform(1 - jitter, 1 + jitter, count))
    rows = np.array([window.row("on-time"), window.row("behind")], dtype=np.intp)
    for i, t in enumerate(times.tolist()):
        window.append_many(rows, np.array([t, t - behind]), [{"a": float(i)}, {"a": float(-i)}])
    for row, shift in zip(rows.tolist(), (0.0, behind), strict=True):
        held = on_grid(times - shift)
        assert window.latest_ts[row] == held[-1]
        ring = np.sort(window.ring_times(row, window.ts[row]))
        assert ring.tolist() == held[-16:].tolist()
        long_ring = np.sort(window.ring_times(row, window.long_ts[row]))
        assert long_ring.tolist() == held[-48:].tolist()
    assert window.snapshot("behind").values[0].tolist() == [float(-i) for i in range(count - 16, count)]


def test_a_late_sample_far_behind_the_base_keeps_its_time_to_a_few_milliseconds() -> None:
    window = TypeWindow("ac", ("a",), slots=8, capacity=1)
    row = window.row("d")
    for t in range(10):
        window.append(row, 1_760_000_000.0 + t, {"a": 1.0})
    late = 1_760_000_000.0 - 86_000.123
    window.append(row, late, {"a": 2.0})  # a day's backlog: stored, not latest
    ring = window.ring_times(row, window.ts[row])
    assert abs(np.nanmin(ring) - late) < 0.005
    assert window.latest_ts[row] == 1_760_000_009.0
