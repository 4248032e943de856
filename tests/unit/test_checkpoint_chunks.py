"""A checkpoint taken chunk by chunk between passes, as the live gateway takes it (`Checkpointer.step`):
samples keep arriving between the chunks, yet every device comes back as it was at one moment, its `for`
timer resumes, and a slow or failing disk neither stops the copying nor lets copies pile up in memory."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from gateway.engine import checkpoint
from gateway.engine.checkpoint import Checkpointer, restore
from gateway.engine.evaluator import Evaluator
from gateway.store.window import WindowStore
from tests.unit.helpers import PROFILES, washer_rule

RULE = washer_rule(for_="60s")
DEVICES = [f"w{i:02d}" for i in range(40)]


def fresh() -> tuple[Evaluator, WindowStore]:
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=64, initial_devices=4,
                        max_gaps={"washer": 20.0})
    return Evaluator([RULE], store), store


def feed_all(evaluator: Evaluator, store: WindowStore, ts: float) -> list[str]:
    """One sample of every device: w00 shakes from ts 1000 on, the others stay calm, each with its own value."""
    window = store.windows["washer"]
    for i, device in enumerate(DEVICES):
        shaking = device == "w00" and ts >= 1000
        window.append(window.row(device), ts, {"vibration": 3.0 if shaking else i / 100 + ts / 1e6})
    return [f"{t.device_id}:{t.kind.value}@{t.at_ts:g}" for t in evaluator.evaluate()]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few devices, copied one after the other without pacing."""
    evaluator, store = fresh()
    feed_all(evaluator, store, 0.0)
    window = store.windows["washer"]
    row_bytes = sum(a[:1].nbytes for a in window.arrays())
    monkeypatch.setattr(checkpoint, "CHUNK_BYTES", row_bytes * 6)
    monkeypatch.setattr(checkpoint, "MAX_SHARE", 1e9)


def test_samples_between_chunks_leave_every_device_as_it_was_at_one_moment(small_chunks: None,
                                                                          tmp_path: Path) -> None:
    evaluator, store = fresh()
    for ts in range(970, 1031, 5):
        assert feed_all(evaluator, store, ts) == []  # w00 pending since 1000
    path = tmp_path / "checkpoint.npz"
    saver = Checkpointer(path, interval=1e-9)
    saver.maybe_save(store, evaluator, now=1030)
    ts = 1030
    while saver.next_step != float("inf"):
        ts += 1  # samples between the chunks, as live
        assert feed_all(evaluator, store, ts) == []
        saver.step()
    assert saver._writer is not None
    saver._writer.join(10)
    assert saver.saved == 1 and saver.last_chunks >= 6 and not path.with_name(path.name + ".partial").exists()
    assert path.stat().st_mode & 0o777 == 0o600  # the appliances' telemetry: the gateway's user only

    evaluator, store = fresh()
    window = store.windows["washer"]
    window.row("other")  # the rows move
    assert restore(path, store, evaluator, now=ts, max_age=3600) == len(DEVICES)
    moments = set()
    for i, device in enumerate(DEVICES):
        snapshot = window.snapshot(device)
        newest = float(snapshot.ts[-1])
        moments.add(newest)
        assert window.latest_ts[window.rows[device]] == newest  # the ring and the latest values agree
        if device != "w00":
            vibration = snapshot.values[snapshot.metric_names.index("vibration")]
            assert vibration[-1] == pytest.approx(i / 100 + newest / 1e6)  # the value of that very sample
    assert len(moments) > 1, "the chunks were copied at different moments"
    assert min(moments) >= 1030 and max(moments) <= ts
    fired = []
    for later in range(ts + 1, 1061):
        fired += feed_all(evaluator, store, later)
    assert fired == ["w00:firing@1060"]  # 60 s after the onset at 1000, across the restart


def test_a_slow_disk_holds_the_copying_back_with_at_most_a_few_chunks_in_memory(
        small_chunks: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    evaluator, store = fresh()
    feed_all(evaluator, store, 1000)
    disk = threading.Event()
    original_add = checkpoint.CheckpointFile.add

    def slow_add(self: checkpoint.CheckpointFile, arrays: dict[str, np.ndarray]) -> None:
        disk.wait(10)
        original_add(self, arrays)

    monkeypatch.setattr(checkpoint.CheckpointFile, "add", slow_add)
    saver = Checkpointer(tmp_path / "checkpoint.npz", interval=1e-9)
    saver.maybe_save(store, evaluator, now=1000)
    for _ in range(50):  # many passes while the disk does not move
        saver.step()
    assert saver._queue.qsize() <= checkpoint.QUEUED
    assert saver.next_step != float("inf"), "the copying waits for the writer"
    disk.set()
    while saver.next_step != float("inf"):
        saver.step()
    assert saver._writer is not None
    saver._writer.join(10)
    assert saver.saved == 1


def test_a_disk_that_fails_is_counted_and_the_checkpoint_is_taken_again_next_time(small_chunks: None,
                                                                                  tmp_path: Path) -> None:
    evaluator, store = fresh()
    feed_all(evaluator, store, 1000)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the checkpoint's folder should be")
    saver = Checkpointer(blocked / "checkpoint.npz", interval=1e-9)
    saver.maybe_save(store, evaluator, now=1000)
    while saver.next_step != float("inf"):
        saver.step()  # never blocks, although nothing can be written
    assert saver._writer is not None
    saver._writer.join(10)
    assert saver.failures == 1 and saver.saved == 0
    saver.path = tmp_path / "checkpoint.npz"  # the disk is back
    saver.maybe_save(store, evaluator, now=1001)
    while saver.next_step != float("inf"):
        saver.step()
    saver._writer.join(10)
    evaluator, store = fresh()
    assert saver.saved == 1 and restore(saver.path, store, evaluator, now=1001, max_age=60) == len(DEVICES)


def test_a_stop_while_a_checkpoint_is_half_taken_writes_the_whole_last_state(small_chunks: None,
                                                                            tmp_path: Path) -> None:
    evaluator, store = fresh()
    feed_all(evaluator, store, 1000)
    path = tmp_path / "checkpoint.npz"
    saver = Checkpointer(path, interval=1e-9)
    saver.maybe_save(store, evaluator, now=1000)
    saver.step()
    feed_all(evaluator, store, 1001)
    saver.save_now(store, evaluator, now=1001)
    assert saver.saved == 1 and not path.with_name(path.name + ".partial").exists()
    evaluator, store = fresh()
    assert restore(path, store, evaluator, now=1001, max_age=60) == len(DEVICES)
    window = store.windows["washer"]
    assert {float(window.latest_ts[window.rows[d]]) for d in DEVICES} == {1001.0}


@pytest.mark.parametrize("rows_per_chunk", [1, 7, 17, 40, 1_000])
def test_any_chunk_size_restores_every_device_consistent_and_resumes_its_timer(
        rows_per_chunk: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same as above for chunks of one row, of sizes that do not divide the fleet, and of all of it."""
    evaluator, store = fresh()
    feed_all(evaluator, store, 970)
    row_bytes = sum(a[:1].nbytes for a in store.windows["washer"].arrays()) + 8 * 5  # + one rule's timers
    monkeypatch.setattr(checkpoint, "CHUNK_BYTES", row_bytes * rows_per_chunk)
    monkeypatch.setattr(checkpoint, "MAX_SHARE", 1e9)
    for ts in range(975, 1031, 5):
        feed_all(evaluator, store, ts)
    path = tmp_path / "checkpoint.npz"
    saver = Checkpointer(path, interval=1e-9)
    saver.maybe_save(store, evaluator, now=1030)
    ts = 1030.0
    while saver.next_step != float("inf"):
        ts += 0.5  # 40 chunks of one row end well before the `for` does
        assert feed_all(evaluator, store, ts) == []
        saver.step()
    assert saver._writer is not None
    saver._writer.join(10)
    assert saver.last_chunks == -(-len(DEVICES) // rows_per_chunk)

    evaluator, store = fresh()
    window = store.windows["washer"]
    window.row("other")
    assert restore(path, store, evaluator, now=ts, max_age=3600) == len(DEVICES)
    for i, device in enumerate(DEVICES):
        snapshot = window.snapshot(device)
        assert window.latest_ts[window.rows[device]] == snapshot.ts[-1]
        if device != "w00":
            vibration = snapshot.values[snapshot.metric_names.index("vibration")]
            assert vibration[-1] == pytest.approx(i / 100 + float(snapshot.ts[-1]) / 1e6)
    fired = []
    for later in range(int(ts) + 1, 1061):
        fired += feed_all(evaluator, store, later)
    assert fired == ["w00:firing@1060"]
