"""A checkpoint taken half-way through a `for` and restored into a fresh window store and evaluator resumes the
timer where it was: the rule fires when the condition has held for `for` in all, not `for` after the restart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.engine.checkpoint import restore, take, write
from gateway.engine.evaluator import Evaluator
from gateway.store.window import WindowStore
from tests.unit.helpers import PROFILES, washer_rule

RULE = washer_rule(for_="60s")


def fresh() -> tuple[Evaluator, WindowStore]:
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=64, initial_devices=2,
                        max_gaps={"washer": 20.0}, long_rings={"washer": (("vibration",), 200)})
    return Evaluator([RULE], store), store


def feed(evaluator: Evaluator, store: WindowStore, ts: float, vibration: float, device: str = "w1") -> list[str]:
    window = store.windows["washer"]
    window.append(window.row(device), ts, {"vibration": vibration})
    return [f"{t.kind.value}@{t.at_ts:g}" for t in evaluator.evaluate()]


def test_a_restored_checkpoint_resumes_a_for_half_way_through(tmp_path: Path) -> None:
    evaluator, store = fresh()
    for device in ("w0", "w1", "w2"):  # rows in another order than after the restart
        feed(evaluator, store, 995, 1, device)
    for ts in range(1000, 1035, 5):
        assert feed(evaluator, store, ts, 3) == []  # pending since 1000
    path = tmp_path / "checkpoint.npz"
    write(path, take(store, evaluator, now=1035))

    evaluator, store = fresh()  # the restarted gateway
    store.windows["washer"].row("other")  # a device known before the checkpoint is read
    assert restore(path, store, evaluator, now=1040, max_age=3600) == 3
    window = store.windows["washer"]
    assert window.latest_ts[window.rows["w1"]] == 1030
    row = window.rows["w1"]
    assert np.nanmax(window.ring_times(row, window.long_ts[row])) == 1030  # the long ring came back too
    assert feed(evaluator, store, 1040, 3) == []
    assert feed(evaluator, store, 1055, 3) == []
    assert feed(evaluator, store, 1060, 3) == ["firing@1060"]  # 60 s after the onset at 1000, across the restart


def test_without_a_checkpoint_the_timer_starts_again(tmp_path: Path) -> None:
    evaluator, store = fresh()
    assert restore(tmp_path / "none.npz", store, evaluator, now=1040, max_age=3600) == 0
    assert feed(evaluator, store, 1040, 3) == []
    assert feed(evaluator, store, 1060, 3) == []  # what a crash did before: the fault is found a minute late


@pytest.mark.parametrize("damage", ["truncated", "garbage", "too_old", "other_layout", "other_long_column",
                                    "changed_rule"])
def test_a_checkpoint_that_cannot_be_used_is_ignored_and_detection_starts_empty(tmp_path: Path, damage: str) -> None:
    evaluator, store = fresh()
    for ts in range(1000, 1035, 5):
        feed(evaluator, store, ts, 3)
    path = tmp_path / "checkpoint.npz"
    write(path, take(store, evaluator, now=1035))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint" * 10)
    now = 1035 + 7200 if damage == "too_old" else 1040
    long_column = "water_level" if damage == "other_long_column" else "vibration"  # the same shapes
    store = WindowStore({n: p.stored_names for n, p in PROFILES.items()},
                        slots=32 if damage == "other_layout" else 64, initial_devices=2, max_gaps={"washer": 20.0},
                        long_rings={"washer": ((long_column,), 200)})
    rule = washer_rule(for_="61s") if damage == "changed_rule" else RULE
    evaluator = Evaluator([rule], store)
    restored = restore(path, store, evaluator, now=now, max_age=3600)
    if damage == "changed_rule":  # the telemetry is still good; only the changed rule's timer starts again
        assert restored == 1
    else:
        assert restored == 0
    pending = evaluator.pending_state("washer")[rule.rule_id][1]["since"]
    assert np.isnan(pending).all()


def test_recordings_survive_the_restart_so_the_evidence_still_reaches_back_to_each_onset(tmp_path: Path) -> None:
    """The ring holds 64 slots; a rule with `for: 10m` records its pending devices. Restored from the ring
    alone, the evidence after a restart would start 128 s before the restart instead of at the onset. Two
    recordings of other lengths, on rows that move, come back each to its own device."""
    rule = washer_rule(for_="10m")
    onsets = {"w1": 2, "w2": 150}
    at_firing: dict[str, list[float]] = {}

    def started() -> tuple[Evaluator, WindowStore]:
        store = WindowStore({n: p.stored_names for n, p in PROFILES.items()}, slots=64, initial_devices=2,
                            max_gaps={"washer": 20.0})
        return Evaluator([rule], store), store

    def feed_all(ts: int) -> list[str]:
        fired = []
        for device, onset in onsets.items():
            for transition in feed(evaluator, store, ts, 3.0 if ts >= onset else 0.5, device):
                fired.append(f"{device}:{transition}")
                at_firing[device] = store.windows["washer"].snapshot(device).ts.tolist()
        return fired

    evaluator, store = started()
    assert not store.windows["washer"].holds_evidence_for(600.0)
    feed(evaluator, store, 0, 0.5, "w0")  # the others on other rows after the restart
    for ts in range(0, 401, 2):
        assert feed_all(ts) == []
    before = {device: store.windows["washer"].snapshot(device).ts.tolist() for device in onsets}
    assert before["w1"][0] == 0 and len(before["w1"]) == 201  # recorded: more than the ring's 64
    path = tmp_path / "checkpoint.npz"
    write(path, take(store, evaluator, now=400))

    evaluator, store = started()
    window = store.windows["washer"]
    window.row("other")
    assert restore(path, store, evaluator, now=401, max_age=3600) == 3
    assert sorted(window.recorded_rows().tolist()) == sorted(window.rows[d] for d in onsets)
    fired = []
    for ts in range(402, 753, 2):
        fired += feed_all(ts)
    assert fired == ["w1:firing@602", "w2:firing@750"]  # 600 s after each onset, across the restart
    for device, detected in (("w1", 602), ("w2", 750)):  # every sample from before the onset, none twice
        assert at_firing[device] == before[device] + [float(t) for t in range(402, detected + 1, 2)]
