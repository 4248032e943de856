"""A platform in another language can check a real ticket's seal: Node.js with the npm `canonicalize` package
(an RFC 8785 implementation independent of ours, installed by `make test` into .cache/node) recomputes the
canonical bytes, the SHA-256 and the HMAC of a ticket the gateway opened and sealed."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_sim.scenario import scenario_from_dict
from gateway.accuracy import run_scenario
from gateway.config import PROJECT_ROOT
from gateway.diagnosis.seal import canonical, verify
from gateway.store.db import Database

pytestmark = pytest.mark.e2e

NODE_MODULES = PROJECT_ROOT / ".cache" / "node" / "node_modules"
CHECK = r"""
const canonicalize = require("canonicalize");
const crypto = require("crypto");
const ticket = JSON.parse(require("fs").readFileSync(0, "utf8"));
const seal = ticket.seal;
delete ticket.seal;
const text = canonicalize(ticket);
const digest = crypto.createHash("sha256").update(text, "utf8").digest("hex");
const mac = crypto.createHmac("sha256", Buffer.from(process.env.SEAL_KEY_HEX, "hex")).update(digest).digest("hex");
process.stdout.write(JSON.stringify({text, digest, mac, seal}));
"""


def test_node_recomputes_the_seal_of_a_real_ticket(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "canonicalize").is_dir():
        pytest.fail("Node.js and the npm package canonicalize are needed: `make node-deps` installs them "
                    "(`make test` does it first)")
    scenario = scenario_from_dict({"name": "seal", "seed": 2, "duration": "8h",
                                   "fleet": [{"type": "air_conditioner", "brand": "Midea", "every": "10s"}],
                                   "faults": [{"device": "ac-01", "fault": "condenser_fan_failure", "at": "1h"}]})
    run_scenario(scenario, tmp_path)
    db = Database(tmp_path / "gateway.db")
    try:
        tickets = [t["payload"] for t in db.tickets(limit=10)]
    finally:
        db.close()
    assert tickets, "the scenario's fault opened no ticket"
    key = (tmp_path / "gateway.key").read_bytes()
    for ticket in tickets:
        assert verify(ticket, key).valid
        # the ticket as the platform receives it: JSON text, parsed by JavaScript
        answer = subprocess.run([node, "-e", CHECK], input=json.dumps(ticket, ensure_ascii=False).encode(),
                                capture_output=True, check=True, timeout=60,
                                env={"NODE_PATH": str(NODE_MODULES), "SEAL_KEY_HEX": key.hex(), "PATH": "/usr/bin"})
        node_says = json.loads(answer.stdout)
        assert node_says["text"].encode() == canonical(ticket)
        assert node_says["digest"] == ticket["seal"]["sha256"]
        assert node_says["mac"] == ticket["seal"]["hmac"] == hmac.new(key, node_says["digest"].encode(),
                                                                        hashlib.sha256).hexdigest()
