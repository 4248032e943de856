"""History minutes and chart queries for a known synthetic series, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.db import StorageError
from gateway.store.history import History, Row
from gateway.store.window import WindowStore

T0 = 1_750_000_020.0 - 1_750_000_020.0 % 60  # a minute boundary


@pytest.fixture
def history(tmp_path: Path) -> History:
    store = WindowStore({"washer": ("water_level", "motor_current")}, slots=600)
    window = store.windows["washer"]
    for i in range(180):  # three minutes at 1 Hz: water_level = i, motor_current only every 10 s
        metrics = {"water_level": float(i)}
        if i % 10 == 0:
            metrics["motor_current"] = 100.0 + i
        window.append(window.row("w1"), T0 + i, metrics)
    return History(tmp_path / "history.db", store, {"washer": 1.0})


def test_minutes_hold_min_mean_max_last(history: History) -> None:
    history._next_minute["washer"] = T0
    rows = history.collect(T0 + 186)
    history.write(rows)
    minutes = sorted((r[1], r[2] - int(T0), r[3:]) for r in rows)
    assert minutes == [
        ("motor_current", 0, (6, 100.0, 125.0, 150.0, 150.0)),
        ("motor_current", 60, (6, 160.0, 185.0, 210.0, 210.0)),
        ("motor_current", 120, (6, 220.0, 245.0, 270.0, 270.0)),
        ("water_level", 0, (60, 0.0, 29.5, 59.0, 59.0)),
        ("water_level", 60, (60, 60.0, 89.5, 119.0, 119.0)),
        ("water_level", 120, (60, 120.0, 149.5, 179.0, 179.0)),
    ]
    assert history.collect(T0 + 190) == [], "a minute is flushed once"


def test_a_query_downsamples_to_the_points_asked_for(history: History) -> None:
    history._next_minute["washer"] = T0
    history.write(history.collect(T0 + 126))  # two minutes stored; the third is still only in memory
    [series] = history.query("w1", ["water_level"], T0, T0 + 180, points=1).values()
    assert (series["min"], series["max"], series["last"]) == ([0.0], [179.0], [179.0])
    assert series["mean"] == [pytest.approx(89.5)]
    per_minute = history.query("w1", ["water_level"], T0, T0 + 180, points=3)["water_level"]
    assert per_minute["min"] == [0.0, 60.0, 120.0] and per_minute["max"] == [59.0, 119.0, 179.0]
    assert per_minute["mean"] == [29.5, 89.5, 149.5]
    raw = history.query("w1", ["water_level"], T0 + 150, T0 + 160, points=100)["water_level"]
    assert raw["mean"] == [float(v) for v in range(150, 160)], "recent samples come raw from memory"
    assert history.query("nobody", ["water_level"], T0, T0 + 60)["water_level"]["ts"] == []


def test_minutes_past_minute_days_become_hours_and_hours_past_days_are_deleted(history: History) -> None:
    history._next_minute["washer"] = T0
    history.write(history.collect(T0 + 186))  # three minutes, all in one hour
    hour = T0 - T0 % 3600
    assert history.prune(T0 + 3600) == 0, "minutes stay minutes for a day"
    assert history.prune(T0 + 86400 + 3600) == 6, "all six minute rows rolled up"
    hours = sorted(history._conn.execute("SELECT metric, minute, n, min, mean, max, last FROM history_hour"))
    assert hours == [("motor_current", hour, 18, 100.0, 185.0, 270.0, 270.0),
                     ("water_level", hour, 180, 0.0, 89.5, 179.0, 179.0)]
    series = history.query("w1", ["water_level"], hour, hour + 3600, points=1)["water_level"]
    assert (series["min"], series["mean"], series["max"], series["last"]) == ([0.0], [89.5], [179.0], [179.0])
    assert history.prune(T0 + 30 * 86400 + 3600) == 2, "the hours are past 30 days"
    assert history.query("w1", ["water_level"], hour, hour + 3600)["water_level"]["ts"] == []


def test_a_minute_written_late_is_merged_into_its_hour(history: History) -> None:
    history._next_minute["washer"] = T0
    history.write(history.collect(T0 + 126))  # minutes 0 and 1
    history.prune(T0 + 86400 + 3600)
    history.write([("w1", "water_level", int(T0) + 120, 60, 120.0, 149.5, 179.0, 179.0)])  # minute 2, late
    history.prune(T0 + 86400 + 3600)
    [(n, low, mean, high, last)] = history._conn.execute(
        "SELECT n, min, mean, max, last FROM history_hour WHERE metric = 'water_level'")
    assert (n, low, mean, high, last) == (180, 0.0, pytest.approx(89.5), 179.0, 179.0)


def test_a_query_reads_hours_and_minutes_together(history: History) -> None:
    history._next_minute["washer"] = T0
    history.write(history.collect(T0 + 186))
    history.prune(T0 + 86400 + 3600)  # yesterday's hour ...
    now = T0 + 86400 + 3600
    history.write([("w1", "water_level", int(now) - 60, 60, 5.0, 6.0, 7.0, 7.0)])  # ... and a minute of today
    series = history.query("w1", ["water_level"], T0 - T0 % 3600, now, points=2000)["water_level"]
    assert series["max"] == [179.0, 7.0] and series["mean"] == [89.5, 6.0]


def test_beyond_its_size_budget_the_history_drops_its_oldest_rows_once(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    store = WindowStore({"washer": ("water_level",)}, slots=10)
    history = History(tmp_path / "history.db", store, {"washer": 1.0}, minute_days=30, max_megabytes=0.25)
    minutes = [int(T0) + 60 * i for i in range(4000)]
    history.write([(f"w{d}", "water_level", m, 1, 1.0, 1.0, 1.0, 1.0) for d in range(3) for m in minutes])
    assert history.used_bytes() > 0.25 * 1024 * 1024, "the rows fill more than the budget"
    with caplog.at_level("WARNING", logger="gateway.history"):
        removed = history.prune(minutes[-1])
    assert 0 < removed < 12_000 and "over its budget" in caplog.text
    oldest, newest = history._conn.execute("SELECT MIN(minute), MAX(minute) FROM history").fetchone()
    assert oldest > minutes[0] and newest == minutes[-1], "the oldest went, the newest stayed"
    assert history._conn.execute("SELECT COUNT(*) FROM history").fetchone()[0] == 12_000 - removed
    assert history.prune(minutes[-1]) == 0, "the space freed inside pages is reused before another drop"


def test_minutes_keep_closing_after_the_gateway_clock_steps_back(tmp_path: Path) -> None:
    """The appliances' timeline goes on (ingest keeps it from going back); the cursor follows it, not the clock."""
    store = WindowStore({"washer": ("water_level",)}, slots=600)
    window = store.windows["washer"]
    history = History(tmp_path / "history.db", store, {"washer": 1.0})
    for i in range(180):
        window.append(window.row("w1"), T0 + i, {"water_level": float(i)})
    history._next_minute["washer"] = T0
    assert len(history.collect(T0 + 186)) == 3
    for i in range(180, 300):
        window.append(window.row("w1"), T0 + i, {"water_level": float(i)})
    stepped_back = T0 + 300 - 7200  # the gateway clock, two hours back
    minutes = sorted(r[2] - int(T0) for r in history.collect(stepped_back))
    assert minutes == [180], "the minute that closed on the appliances' time is flushed"
    history._next_minute["washer"] = T0 + 7200  # a cursor ahead of every clock
    assert [r[2] - int(T0) for r in history.collect(T0 + 306)] == [240]  # starts again, at the last closed minute


def test_minutes_are_written_in_batches_while_the_window_still_holds_them(history: History) -> None:
    """slots 600 at 1 Hz hold 10 minutes: a batch is 40 % of that, 4 minutes; until then a chart reads raw."""
    history._next_minute["washer"] = T0
    assert history.flush(T0 + 186) == 0, "three closed minutes are not a batch yet"
    series = history.query("w1", ["water_level"], T0, T0 + 180, points=3)["water_level"]
    assert series["max"] == [59.0, 119.0, 179.0], "the chart still has them, from the window"
    assert history.flush(T0 + 186, everything=True) == 6, "at stop, everything"


def test_a_restarted_history_resumes_after_its_newest_stored_minute(history: History, tmp_path: Path) -> None:
    history._next_minute["washer"] = T0
    history.write([r for r in history.collect(T0 + 186) if r[2] == int(T0)])  # minute 0 stored, then a stop
    history.close()
    again = History(tmp_path / "history.db", history.store, {"washer": 1.0})
    rows = again.collect(T0 + 186)  # the windows (restored from the checkpoint) still hold minutes 1 and 2
    assert sorted({r[2] - int(T0) for r in rows}) == [60, 120]


def test_a_device_reporting_faster_than_its_profile_loses_no_minute(tmp_path: Path) -> None:
    """600 slots at the profile's 1 s hold 10 minutes; a washer reporting 4 times a second filled them in
    150 s, and batches sized by the profile's interval lost the older minutes before writing them. The
    window now merges such a device's samples to the profile's rate, so its ring holds what history needs."""
    store = WindowStore({"washer": ("water_level", "motor_current")}, slots=600)
    window = store.windows["washer"]
    history = History(tmp_path / "history.db", store, {"washer": 1.0})
    history._next_minute["washer"] = T0
    for i in range(4 * 420):  # seven minutes at 4 Hz, flushed every 10 s as the running gateway does
        window.append(window.row("w1"), T0 + i / 4, {"water_level": float(i)})
        if i % 40 == 0:
            history.flush(T0 + i / 4)
    series = history.query("w1", ["water_level"], T0, T0 + 360, points=6)["water_level"]
    assert len(series["min"]) == 6  # every minute, from its first samples to its last (merged per 1 s)
    for minute, (low, high) in enumerate(zip(series["min"], series["max"], strict=True)):
        assert 240 * minute <= low <= 240 * minute + 3 and 240 * minute + 236 <= high <= 240 * minute + 239


def _fleet(tmp_path: Path, devices: int) -> History:
    """`devices` washers, three minutes of 1 Hz samples each."""
    store = WindowStore({"washer": ("water_level", "motor_current")}, slots=600)
    window = store.windows["washer"]
    for d in range(devices):
        row = window.row(f"w{d:03}")
        for i in range(180):
            window.append(row, T0 + i, {"water_level": float(i + d), "motor_current": 1.0})
    tmp_path.mkdir()
    history = History(tmp_path / "history.db", store, {"washer": 1.0})
    history._next_minute["washer"] = T0
    return history


def _stored(history: History) -> list[tuple[object, ...]]:
    return history._conn.execute("SELECT * FROM history ORDER BY 1, 2, 3").fetchall()


def test_a_flush_writes_a_range_of_devices_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It never holds the whole fleet's rows: each write is one range of devices (at least 16 of them)."""
    monkeypatch.setattr("gateway.store.history.CHUNK_ROWS", 10)
    history, expected = _fleet(tmp_path / "a", 100), _fleet(tmp_path / "b", 100)
    expected.write(expected.collect(T0 + 186))
    sizes: list[int] = []
    write = history.write
    monkeypatch.setattr(history, "write", lambda rows: (sizes.append(len(rows)), write(rows)))
    assert history.flush(T0 + 186, everything=True) == 600  # 100 devices x 2 metrics x 3 minutes
    assert max(sizes) == 16 * 2 * 3 and sum(sizes) == 600
    assert _stored(history) == _stored(expected)


def test_a_disk_failing_half_way_through_a_flush_loses_no_minute(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.store.history.CHUNK_ROWS", 10)
    history, expected = _fleet(tmp_path / "a", 100), _fleet(tmp_path / "b", 100)
    expected.write(expected.collect(T0 + 186))
    calls = 0
    write = history.write

    def failing_second(rows: list[Row]) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:  # the first is what earlier flushes left (nothing), the second the first range
            raise StorageError("disk full")
        write(rows)
    monkeypatch.setattr(history, "write", failing_second)
    with pytest.raises(StorageError):
        history.flush(T0 + 186, everything=True)
    assert len(history.unwritten) == 600 - 96, "the ranges after the failure are kept, not dropped"
    assert history.collect(T0 + 186) == [], "and not computed twice: the cursor moved on"
    assert history.flush(T0 + 186, everything=True) == 600 - 96
    assert history.unwritten == []
    assert _stored(history) == _stored(expected)
