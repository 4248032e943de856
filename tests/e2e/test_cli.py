"""The command line as a user runs it: real processes, real output, real exit codes."""

from __future__ import annotations

import itertools
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.config import PROJECT_ROOT
from gateway.incidents.cases import open_incident
from gateway.model import CasePolicy, NewEpisode

pytestmark = pytest.mark.e2e


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=PROJECT_ROOT)


def test_demo_opens_a_diagnosed_ticket_walks_its_service_in_order_and_prints_it(tmp_path: Path) -> None:
    """At --time-scale 5 the timeline was out of order (detected after the ticket opened) and the repair was never
    verified: the simulated appliances and the wall clock of the gateway and the platform were mixed."""
    result = cli("demo", "--duration", "45", "--time-scale", "5", "--fault-after", "5", "--wait-for-you", "1",
                 "--data-dir", str(tmp_path), "--web-port", "0", "--platform-port", "0", "--broker-port", "0",
                 timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    token = re.search(r"web console:       http://127.0.0.1:\d+/\?token=(\S{16,})", out)
    assert token, out[:2000]
    assert re.search(rf"enter their visit code \d{{6}} at http://127.0.0.1:\d+/tickets/1\?token={token.group(1)}\n",
                     out), "the visit-code link signs the owner in"
    assert "service  repair verified by telemetry; confirmed by the customer, rating 5" in out, out[-3000:]
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        steps = db.execute("SELECT step, at FROM ticket_steps WHERE ticket_id=1 ORDER BY step_id").fetchall()
    assert [s for s, _ in steps] == ["detected", "diagnosed", "ticket_opened", "accepted", "technician_assigned",
                                     "technician_verified", "repaired", "verified_by_telemetry", "confirmed"]
    assert all(a <= b for (_, a), (_, b) in itertools.pairwise(steps)), steps
    assert " INFO    gateway.web" not in result.stderr, "the console's access log is at DEBUG"
    assert "The service platform received 1 ticket(s)." in out, out[-3000:]
    assert "AC-CND-01 Condenser airflow loss" in out
    causes = re.findall(r"^  cause +\d+% (.+?):", out, flags=re.M)
    assert causes[0] == "Outdoor fan motor failed", causes
    assert "evidence discharge_pressure" in out
    assert "Traceback" not in result.stderr


def in_folder(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command run from `folder`, with this checkout's code."""
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60,
                          cwd=folder, env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)})


def test_read_only_commands_in_the_wrong_folder_create_nothing_and_say_why(tmp_path: Path) -> None:
    for args in (["ticket", "show", "1"], ["outbox", "list"]):
        result = in_folder(tmp_path, *args)
        assert result.returncode == 2, result.stderr
        assert f"error: no gateway database at {tmp_path / 'var' / 'gateway.db'}" in result.stderr
        assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "nothing was created"
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "gateway.key").write_bytes(b"k" * 32)
    (tmp_path / "bad.json").write_text("{not json")
    for name, said in (("missing.json", "cannot read missing.json"), ("bad.json", "bad.json is not JSON")):
        result = in_folder(tmp_path, "verify-ticket", name)
        assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_missing_input_file_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    for args in (["rules", "test", "missing.test.yaml"], ["sim", "--scenario", "missing.yaml"],
                 ["replay", "missing.jsonl"], ["score", "missing.yaml"]):
        result = in_folder(tmp_path, *args)
        assert result.returncode in (1, 2) and "missing" in result.stdout + result.stderr, args
        assert "Traceback" not in result.stderr, (args, result.stderr[-2000:])


def test_version() -> None:
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("appliance-gateway 0."), result.stdout


def test_broken_config_names_the_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[upstream]\ntimeout_seconds = -1\n")
    result = cli("run", "--config", str(config))
    assert result.returncode == 2
    assert f"error: {config}: key 'upstream.timeout_seconds' must be greater than 0" in result.stderr


def test_rules_check_lists_every_error_with_file_and_line(tmp_path: Path) -> None:
    assert cli("rules", "check").returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text((PROJECT_ROOT / "rules" / "air_conditioner.yaml").read_text()
                   .replace("discharge_pressure > 3800", "discharge_presure > 3800")
                   .replace("for: 10s", "for: ten seconds"))
    result = cli("rules", "check", str(bad))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{bad}:") and "unknown metric 'discharge_presure'" in line for line in lines)
    assert any(line.startswith(f"{bad}:") and "key 'for' must be a duration" in line for line in lines)
    assert lines[-1] == "2 error(s)"


def test_hostile_rule_files_are_refused_quickly_with_one_line_each(tmp_path: Path) -> None:
    """An alias bomb took minutes and gigabytes; a non-UTF-8, a 5,000-deep or a 2 MB file gave a traceback."""
    (tmp_path / "latin1.yaml").write_bytes("# Gerät\ngroups: []\n".encode("latin-1"))
    (tmp_path / "huge.yaml").write_text("# " + "x" * 2_000_000 + "\ngroups: []\n")
    for name in ("alias_bomb", "deep_nesting"):
        (tmp_path / f"{name}.yaml").write_text((PROJECT_ROOT / "tests" / "rule_files" / f"{name}.bad.yaml").read_text())
    result = cli("rules", "check", str(tmp_path), timeout=30)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert any("latin1.yaml:1: file: not UTF-8 text" in line for line in lines), lines
    assert any("huge.yaml:1: file: 2,000,014 bytes; a hand-written file is at most 1,048,576" in line
               for line in lines), lines
    assert any("alias_bomb.yaml:3: file: not valid YAML: anchors and aliases" in line for line in lines), lines
    assert any("deep_nesting.yaml:2: file: not valid YAML: nested more than 32" in line for line in lines), lines
    assert lines[-1] == "4 error(s)"


def test_help_lists_the_commands() -> None:
    result = cli("--help")
    assert result.returncode == 0
    for command in ("run", "demo", "platform", "sim", "rules"):
        assert command in result.stdout


def test_replay_finds_the_fault_in_a_recording_and_drafts_the_ticket(tmp_path: Path) -> None:
    import orjson

    from firmware_sim.models import AirConditionerModel, FaultSchedule

    start = 1_760_000_000.0
    model = AirConditionerModel(3, FaultSchedule("condenser_fan_failure", start + 120, 10))
    recording = tmp_path / "ac.jsonl"
    recording.write_text("".join(
        orjson.dumps({"device_id": "ac-home", "ts": start + i, "type": "air_conditioner",
                      "metrics": model.sample(start + i)}).decode() + "\n" for i in range(300)))
    result = cli("replay", str(recording))
    assert result.returncode == 0, result.stderr
    assert "ac-home: condenser_airflow_loss fires" in result.stdout
    assert "ticket draft: ac-home AC-CND-01" in result.stdout and "330-670 CNY" in result.stdout

    drafts = cli("replay", "--json", str(recording))
    account = orjson.loads(drafts.stdout)
    [ticket] = account["tickets"]
    assert ticket["fault"]["code"] == "AC-CND-01" and ticket["evidence"]["observed"]
    firing = [t for t in account["transitions"] if t["rule"] == "condenser_airflow_loss" and t["kind"] == "firing"]
    assert firing and firing[0]["device_id"] == "ac-home" and firing[0]["observed"]
    assert ticket["probable_causes"][0]["supported_by"] == list(dict.fromkeys(
        ticket["probable_causes"][0]["supported_by"])), "a rule supports a cause once"


def test_replay_validates_values_as_the_live_gateway_does(tmp_path: Path) -> None:
    """An absurd reading is dropped and opens the data-quality finding, exactly as live; never a priced fault."""
    import orjson

    start = 1_760_000_000.0
    normal = {"compressor_on": 1, "compressor_frequency": 60, "discharge_pressure": 2700, "suction_pressure": 900,
              "outdoor_fan_speed": 800, "local_temperature": 26.0, "outdoor_temperature": 32.0}
    recording = tmp_path / "absurd.jsonl"
    recording.write_text("".join(
        orjson.dumps({"device_id": "ac-x", "ts": start + i, "type": "air_conditioner",
                      "metrics": {**normal, "discharge_pressure": 99999 if i >= 10 else 2700}}).decode() + "\n"
        for i in range(100)))
    account = orjson.loads(cli("replay", "--json", str(recording)).stdout)
    assert account["dropped"]["out_of_range"] == 90
    assert "discharge_pressure=99999" in account["drop_details"]["out_of_range"]
    codes = [t["fault"]["code"] for t in account["tickets"]]
    assert codes == ["DQ-RANGE"], codes
    assert not any(t["rule"] == "condenser_airflow_loss" for t in account["transitions"])


def test_replay_reports_cells_columns_and_types_the_gateway_cannot_use(tmp_path: Path) -> None:
    csv_file = tmp_path / "odd.csv"
    rows = ["ts,device_id,type,freezer_temperature,frezer_temp"]
    rows += [f"{1_760_000_000 + 60 * i},fr1,refrigerator,{'#VALUE!' if i == 3 else -18},-18" for i in range(10)]
    rows += [f"{1_760_000_600 + 60 * i},fr2,,-18,-18" for i in range(3)]  # no type and no meta: unknown appliance
    csv_file.write_text("\n".join(rows) + "\n")
    result = cli("replay", str(csv_file))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert f"note: {csv_file}:5: column 'freezer_temperature': '#VALUE!' is not a number" in result.stdout
    assert "dropped 10 x unknown_metric, e.g. fr1: refrigerator has no metric 'frezer_temp'" in result.stdout
    assert "x unknown_device, e.g. fr2" in result.stdout
    assert "dropped 1 x wrong_type, e.g. fr1: freezer_temperature='#VALUE!' is not a number" in result.stdout


def test_replay_of_one_appliance_sees_it_fall_silent(tmp_path: Path) -> None:
    """The time-driven rules tick through a gap in the recording, as they would have live."""
    import orjson

    start = 1_760_000_000.0
    lines = [{"device_id": "wh-1", "ts": start + 10 * i, "type": "water_heater",
              "metrics": {"tank_temperature": 55.0, "heating_on": 0}} for i in range(30)]
    lines += [{"device_id": "wh-1", "ts": start + 7200 + 10 * i, "type": "water_heater",
               "metrics": {"tank_temperature": 55.0, "heating_on": 0}} for i in range(5)]
    recording = tmp_path / "gap.jsonl"
    recording.write_text("".join(orjson.dumps(line).decode() + "\n" for line in lines))
    account = orjson.loads(cli("replay", "--json", str(recording)).stdout)
    silent = [t for t in account["transitions"] if t["rule"] == "water_heater_silent"]
    assert [t["kind"] for t in silent] == ["firing", "resolved"]
    assert start + 290 < silent[0]["ts"] < start + 290 + 320, "silent once 300 s pass without a sample"


def test_replay_reads_csv_and_reports_bad_lines(tmp_path: Path) -> None:
    csv_file = tmp_path / "fridge.csv"
    rows = ["ts,device_id,type,freezer_temperature,compressor_on"]
    rows += [f"{1_760_000_000 + 60 * i},fr1,refrigerator,{-18 + 0.2 * i:.2f},0" for i in range(60)]
    csv_file.write_text("\n".join(rows) + "\n")
    result = cli("replay", str(csv_file))
    assert result.returncode == 0, result.stderr
    assert "fr1: compressor_not_starting fires" in result.stdout

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"device_id": "x", "ts": 1, "metrics": {}}\n{oops\n{"ts": 2, "metrics": {}}\n')
    result = cli("replay", str(bad))
    assert result.returncode == 2
    assert f"{bad}:2: not JSON" in result.stderr and f"{bad}:3: needs a device_id" in result.stderr


def test_verify_ticket_says_what_was_changed(tmp_path: Path) -> None:
    import orjson

    from gateway.diagnosis.seal import load_or_create_key, seal
    from gateway.store.db import Database

    config = tmp_path / "gateway.toml"
    config.write_text('[storage]\ndatabase = "gw.db"\nkey_file = "gw.key"\n')
    key = load_or_create_key(tmp_path / "gw.key")
    ticket = seal({"idempotency_key": "k1", "fault": {"code": "AC-CND-01"}, "price": {"total_band": [330, 670]},
                   "findings_detail": []}, key)
    db = Database(tmp_path / "gw.db")
    open_incident(db, NewEpisode("r", "v", "ac", "fault", 1.0, 1.0, "k1"), {"rule": "r"},
                  lambda findings, k, _at: ticket, 1.0, CasePolicy())
    db.close()
    stored = Database(tmp_path / "gw.db")
    [row] = stored.tickets()
    stored.close()

    sent = tmp_path / "sent.json"
    sent.write_bytes(orjson.dumps({"ticket_id": "SVC-1", "ticket": row["payload"]}))
    result = cli("verify-ticket", str(sent), "--config", str(config))
    assert result.returncode == 0 and result.stdout.startswith("valid:"), result.stdout + result.stderr

    sent.write_bytes(orjson.dumps({"ticket": {**row["payload"], "price": {"total_band": [330, 970]}}}))
    result = cli("verify-ticket", str(sent), "--config", str(config))
    assert result.returncode == 1
    assert "INVALID: the ticket was altered after sealing: changed $.price.total_band[1]" in result.stdout

    assert cli("verify-ticket", "1", "--config", str(config)).returncode == 0


def test_outbox_lists_explains_and_retries(tmp_path: Path) -> None:
    from gateway.store.db import Database

    config = tmp_path / "gateway.toml"
    config.write_text('[storage]\ndatabase = "gw.db"\n')
    db = Database(tmp_path / "gw.db")
    for key, device in (("k-dead", "wm-1"), ("k-wait", "ac-1")):
        open_incident(db, NewEpisode(f"rule-{key}", "v", device, "fault", 1.0, 1.0, key), {"rule": "r"},
                      lambda findings, k, _at: {"idempotency_key": k, "fault": {"code": "X-1"}, "findings_detail": []},
                      1.0, CasePolicy())
    entries = {e.idempotency_key: e for e in db.due_outbox(2.0, 10)}
    dead, wait = entries["k-dead"], entries["k-wait"]
    db.dead_letter(dead.outbox_id, "HTTP 422 appliance.device_id is required")
    db.schedule_retry(wait.outbox_id, 4_000_000_000.0, "HTTP 503")
    db.close()

    listing = cli("outbox", "--config", str(config))
    assert listing.returncode == 0, listing.stderr
    assert "rejected: HTTP 422 appliance.device_id is required" in listing.stdout
    assert "(last: HTTP 503)" in listing.stdout and "1 queued, 0 sending, 0 delivered, 1 dead" in listing.stdout

    explained = cli("outbox", "explain", str(dead.outbox_id), "--config", str(config))
    assert f"appliance-gateway outbox retry {dead.outbox_id}" in explained.stdout

    assert cli("outbox", "retry", str(dead.outbox_id), "--config", str(config)).returncode == 0
    assert "2 queued, 0 sending, 0 delivered, 0 dead" in cli("outbox", "--config", str(config)).stdout
    assert cli("outbox", "explain", "--config", str(config)).returncode == 2


async def test_a_service_walk_from_the_command_line(tmp_path: Path) -> None:
    """platform-advance plays the platform; `ticket` shows the timeline, takes the visit code and the rating."""
    import asyncio

    import aiohttp

    from firmware_sim.delivery_faults import queue_tickets
    from firmware_sim.platform import PlatformServer
    from gateway.clock import SystemClock
    from gateway.config import ServiceConfig, UpstreamConfig
    from gateway.diagnosis.seal import load_or_create_key
    from gateway.outbox.sender import OutboxSender
    from gateway.service.follow import PlatformFollower
    from gateway.service.timeline import ServiceDesk
    from gateway.store.db import Database

    async def run(*args: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", *args, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, cwd=PROJECT_ROOT)
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, out.decode()

    config = tmp_path / "gateway.toml"
    config.write_text('[storage]\ndatabase = "gw.db"\n')
    platform = PlatformServer(tmp_path / "platform.db")
    await platform.start()
    db = Database(tmp_path / "gw.db")
    queue_tickets(db, 1, "cli")
    upstream = UpstreamConfig(url=platform.url)
    sender = asyncio.create_task(OutboxSender(db, upstream, SystemClock()).run())
    key = load_or_create_key(tmp_path / "var" / "gateway.key")  # the key the CLI reads beside its database
    follower = PlatformFollower(ServiceDesk(db, SystemClock(), ServiceConfig(), lambda _d: None, key), upstream,
                                ServiceConfig())
    try:
        code, out = await run("platform-advance", "SVC-999999", "technician_assigned", "--platform", platform.url)
        assert code == 1 and "SVC-999999: no such ticket" in out, out
        for _ in range(100):
            if db.outbox_counts()["delivered"] == 1:
                break
            await asyncio.sleep(0.05)
        code, out = await run("platform-advance", "SVC-000001", "technician_assigned", "--platform", platform.url)
        assert code == 0, out
        visit_code = re.search(r"one-time visit code: (\d{6})", out)
        assert visit_code is not None, out
        async with aiohttp.ClientSession() as http:
            assert await follower.poll_once(http) == 1

        code, out = await run("ticket", "visit-code", "1", visit_code.group(1), "--config", str(config))
        assert code == 0 and "\nverified: Wang Fang, employee T-1000" in out, out
        code, out = await run("platform-advance", "SVC-000001", "repaired", "--item", "ac_inverter_board=800",
                              "--platform", platform.url)
        assert code == 0, out
        async with aiohttp.ClientSession() as http:
            assert await follower.poll_once(http) == 1
        code, out = await run("ticket", "confirm", "1", "5", "--config", str(config))
        assert code == 1 and "has not verified the repair yet" in out, out  # confirmation waits for the telemetry
        code, out = await run("ticket", "confirm", "1", "5", "--without-verification", "the owner saw it run",
                              "--config", str(config))
        assert code == 0, out
        code, out = await run("ticket", "show", "1", "--config", str(config))
        assert code == 0, out
        for text in ("Technician verified on site", "Repaired", "Confirmed by the customer",
                     "before the telemetry verified the repair: the owner saw it run",
                     "FLAG: ac_inverter_board was charged (800) but not diagnosed"):
            assert text in out, out
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        db.close()
        await platform.stop()


def test_sim_plays_a_scenario_live_with_brand_metric_names(tmp_path: Path, mosquitto: object) -> None:
    import orjson
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    port = mosquitto.port  # type: ignore[attr-defined]
    scenario = tmp_path / "live.yaml"
    scenario.write_text("name: live\nduration: 6s\nfleet:\n  - {type: air_conditioner, brand: Gree, count: 2, "
                        "every: 2s}\nfaults:\n  - {device: ac-02, fault: duplicates, at: 0s}\n")
    received: list[tuple[str, bytes]] = []
    subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="live-test")
    subscriber.on_message = lambda c, u, m: received.append((m.topic, m.payload))
    subscriber.connect("127.0.0.1", port)
    subscriber.subscribe("appliances/#", qos=1)
    subscriber.loop_start()
    try:
        result = cli("sim", "--broker", f"mqtt://127.0.0.1:{port}", "--scenario", str(scenario))
        assert result.returncode == 0, result.stderr[-2000:]
        assert '"fault":"duplicates"' in result.stdout, "the ground truth is printed first"
        time.sleep(1.0)
    finally:
        subscriber.loop_stop()
        subscriber.disconnect()
    meta = orjson.loads(next(p for t, p in received if t == "appliances/ac-01/meta"))
    assert meta["brand"] == "Gree" and meta["metric_names"]["TP"] == "discharge_temperature"
    reports = [orjson.loads(p) for t, p in received if t.endswith("/telemetry")]
    assert reports and all("TP" in r["metrics"] and "discharge_temperature" not in r["metrics"] for r in reports)
    per_device = {d: sum(t == f"appliances/{d}/telemetry" for t, _ in received) for d in ("ac-01", "ac-02")}
    assert per_device["ac-02"] == 2 * per_device["ac-01"] > 0, "ac-02 sends every report twice"
