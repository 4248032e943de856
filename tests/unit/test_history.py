"""History minutes and chart queries for a known synthetic series, on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.store.history import History
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


def test_old_minutes_are_pruned(history: History) -> None:
    history._next_minute["washer"] = T0
    history.write(history.collect(T0 + 186))
    assert history.prune(T0 + 30 * 86400 + 61) == 4, "minutes 0 and 1 of both metrics are past 30 days"
    assert history.query("w1", ["water_level"], T0, T0 + 120, points=2)["water_level"]["ts"] == []
    assert history.query("w1", ["water_level"], T0 + 120, T0 + 180, points=1)["water_level"]["max"] == [179.0]


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
