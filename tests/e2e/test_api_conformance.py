"""Every route of docs/web-api.yaml, called on a running gateway with a real ticket: each answer's status is
documented for its route, its content type is the documented one, and a JSON body validates against the
documented schema. Errors are `{"error": ...}` JSON everywhere under /api/. The platform stand-in's answers to
the gateway are checked against docs/upstream-api.yaml the same way."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from prometheus_client.parser import text_string_to_metric_families

from firmware_sim.platform import PlatformServer
from gateway.config import PROJECT_ROOT, ServiceConfig
from tests.e2e.conftest import ADMIN, StartGateway, eventually
from tests.e2e.test_diagnosis_paths import publish_all

pytestmark = pytest.mark.e2e

AC = "ac-doc"


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((PROJECT_ROOT / "docs" / name).read_text(encoding="utf-8"))
    return document


def inline(node: Any, document: dict[str, Any]) -> Any:
    """The node with every local $ref replaced by what it points at."""
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return inline(target, document)
        return {k: inline(v, document) for k, v in node.items()}
    if isinstance(node, list):
        return [inline(v, document) for v in node]
    return node


@dataclass
class Answer:
    method: str
    route: str  # the documented path template
    status: int
    content_type: str
    body: bytes


def check(document: dict[str, Any], answer: Answer) -> None:
    operation = inline(document["paths"][answer.route][answer.method.lower()], document)
    where = f"{answer.method} {answer.route} -> {answer.status}"
    responses = operation["responses"]
    assert str(answer.status) in responses, f"{where}: status not documented ({sorted(responses)})"
    response = responses[str(answer.status)]
    content = response.get("content")
    assert content, f"{where}: the document gives no content for this answer"
    assert answer.content_type in content, f"{where}: {answer.content_type}, documented {sorted(content)}"
    schema = content[answer.content_type].get("schema")
    if answer.content_type == "application/json":
        assert schema, f"{where}: no schema"
        errors = [e.message for e in OAS30Validator(schema).iter_errors(orjson.loads(answer.body))]
        assert not errors, f"{where}: {errors[:3]}"


async def call(session: aiohttp.ClientSession, base: str, method: str, route: str, path: str,
               **kwargs: Any) -> Answer:
    async with session.request(method, base + path, allow_redirects=False, **kwargs) as response:
        body = await response.read() if response.content_type != "text/event-stream" else \
            await response.content.readuntil(b"\n\n")
        return Answer(method, route, response.status, response.content_type, body)


async def test_every_console_answer_is_documented(start_gateway: StartGateway, platform: PlatformServer) -> None:
    running = await start_gateway(service=ServiceConfig(webhook_secret="conformance-secret"))
    base = f"http://127.0.0.1:{running.gateway.web_port}"
    now = time.time() - 20
    await publish_all(running.broker_host, running.broker_port, [
        (f"appliances/{AC}/meta", orjson.dumps({"type": "air_conditioner", "brand": "Gree"}), True),
        *[(f"appliances/{AC}/telemetry", orjson.dumps(
            {"ts": now + i, "metrics": {"compressor_on": 1, "compressor_current": 25.0}}), False) for i in range(15)]])
    await eventually(lambda: len(platform.store.list_tickets()) == 1, 15, "the overcurrent ticket is delivered")
    [local] = running.gateway.db.tickets()
    ticket = local["ticket_id"]
    web = load("web-api.yaml")
    answers: list[Answer] = []
    async with aiohttp.ClientSession(headers=ADMIN) as owner, aiohttp.ClientSession() as nobody:
        for method, route, path, kwargs in [
            ("GET", "/api/devices", "/api/devices", {}),
            ("GET", "/api/devices", "/api/devices?state=faulty&type=air_conditioner", {}),
            ("GET", "/api/devices/{device_id}", f"/api/devices/{AC}", {}),
            ("GET", "/api/devices/{device_id}", "/api/devices/no-such-thing", {}),
            ("GET", "/api/devices/{device_id}/history", f"/api/devices/{AC}/history?points=50", {}),
            ("GET", "/api/devices/{device_id}/history", f"/api/devices/{AC}/history?points=0", {}),
            ("GET", "/api/devices/{device_id}/history", f"/api/devices/{AC}/history?from=x", {}),
            ("GET", "/api/devices", "/api/devices?limit=1&offset=0", {}),
            ("GET", "/api/devices", "/api/devices?limit=0", {}),
            ("GET", "/api/tickets", "/api/tickets", {}),
            ("GET", "/api/tickets", "/api/tickets?limit=abc", {}),
            ("GET", "/api/tickets/{ticket_id}", f"/api/tickets/{ticket}", {}),
            ("GET", "/api/tickets/{ticket_id}", "/api/tickets/987654", {}),
            ("GET", "/api/tickets/{ticket_id}/technician-link", f"/api/tickets/{ticket}/technician-link", {}),
            ("GET", "/api/tickets/{ticket_id}/technician-link", "/api/tickets/987654/technician-link", {}),
            ("POST", "/api/tickets/{ticket_id}/visit-code", f"/api/tickets/{ticket}/visit-code",
             {"json": {"code": "123456"}}),
            ("POST", "/api/tickets/{ticket_id}/confirm", f"/api/tickets/{ticket}/confirm", {"json": {"rating": 5}}),
            ("POST", "/api/tickets/{ticket_id}/confirm", f"/api/tickets/{ticket}/confirm", {"json": {"rating": 9}}),
            ("GET", "/api/status", "/api/status", {}),
            ("GET", "/api/stream", "/api/stream", {}),
            ("GET", "/metrics", "/metrics", {}),
            ("GET", "/api/openapi.yaml", "/api/openapi.yaml", {}),
        ]:
            answers.append(await call(owner, base, method, route, path, **kwargs))
        answers.append(await call(nobody, base, "GET", "/api/devices", "/api/devices"))
        answers.append(await call(nobody, base, "GET", "/api/tickets", "/api/tickets",
                                  headers={"Authorization": "Bearer wrong-token-wrong-token"}))
        answers.append(await call(nobody, base, "POST", "/api/platform/events", "/api/platform/events",
                                  data=b"{}", headers={"X-Platform-Signature": "t=1,v1=00"}))
        unknown = await call(owner, base, "GET", "", "/api/no-such-route")
        not_allowed = await call(owner, base, "DELETE", "", "/api/tickets")
    for answer in answers:
        check(web, answer)
    assert {a.route for a in answers} == set(web["paths"]), "every documented route was called"
    detail = next(a for a in answers if a.route == "/api/tickets/{ticket_id}" and a.status == 200)
    upstream = load("upstream-api.yaml")
    sealed = orjson.loads(detail.body)["ticket"]
    errors = [e.message for e in OAS30Validator(inline(upstream["components"]["schemas"]["Ticket"], upstream))
              .iter_errors(sealed)]
    assert not errors, f"the sealed ticket against upstream-api.yaml Ticket: {errors[:3]}"
    metrics = next(a for a in answers if a.route == "/metrics")
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(metrics.body.decode()) for s in f.samples}
    assert value[("appliance_gateway_samples_total", ())] == 15
    assert value[("appliance_gateway_tickets_delivered_total", ())] == 1
    assert value[("appliance_gateway_decision_to_delivery_seconds_count", ())] == 1
    assert value[("appliance_gateway_ingest_to_decision_seconds_count", ())] >= 1
    assert value[("appliance_gateway_rule_pass_seconds_count", ())] >= 1
    for answer in (unknown, not_allowed):
        assert (answer.status, answer.content_type) in ((404, "application/json"), (405, "application/json"))
        assert "error" in orjson.loads(answer.body)


async def test_every_platform_answer_is_documented(platform: PlatformServer) -> None:
    """The platform stand-in the gateway delivers to answers as docs/upstream-api.yaml says."""
    upstream = load("upstream-api.yaml")
    ticket = {"schema_version": 1, "idempotency_key": "fp-1", "opened_at": time.time(),
              "appliance": {"device_id": AC, "type": "heat_pump", "brand": "", "model": "", "serial": "",
                            "firmware": "", "site": "home"},
              "fault": {"code": "HP-1", "title": {"en": "t", "zh": "t"}, "severity": "major", "category": "fault",
                        "explanation": {"en": "e", "zh": "e"}},
              "probable_causes": [{"cause": "c", "likelihood": 1.0, "reason": "r"}],
              "evidence": {"rule": {"id": "r", "version": "1", "expr": "x > 1", "for_seconds": 0, "source": "r.yaml"},
                           "onset_ts": time.time() - 60, "detected_ts": time.time(), "observed": [],
                           "window": {"ts": [], "metrics": {}}},
              "seal": {"version": 2, "algorithm": "jcs-sha256+hmac-sha256", "canonicalization": "RFC 8785",
                       "sha256": "0" * 64, "hmac": "0" * 64, "key_id": "0" * 16}}
    assert not [e.message for e in OAS30Validator(inline(upstream["components"]["schemas"]["Ticket"], upstream))
                .iter_errors(ticket)], "a ticket for an added appliance type is valid"
    step = {"event_id": "e-1", "step": "technician_verified", "at": time.time(), "actor": "gateway",
            "detail": {"technician": {}}}
    body = orjson.dumps(ticket)
    answers = []
    async with aiohttp.ClientSession() as session:
        base = platform.url.removesuffix("/v1/tickets").rstrip("/")
        for method, route, path, kwargs in [
            ("POST", "/v1/tickets", "/v1/tickets", {"data": body, "headers": {"Idempotency-Key": "fp-1"}}),
            ("POST", "/v1/tickets", "/v1/tickets", {"data": body, "headers": {"Idempotency-Key": "fp-1"}}),
            ("POST", "/v1/tickets", "/v1/tickets", {"data": b"not json", "headers": {"Idempotency-Key": "fp-2"}}),
            ("POST", "/v1/tickets", "/v1/tickets", {"data": body}),
            ("GET", "/v1/tickets", "/v1/tickets", {}),
        ]:
            answers.append(await call(session, base, method, route, path, **kwargs))
        svc = orjson.loads(answers[0].body)["ticket_id"]
        for method, route, path, kwargs in [
            ("GET", "/v1/tickets/{ticket_id}", f"/v1/tickets/{svc}", {}),
            ("GET", "/v1/tickets/{ticket_id}", "/v1/tickets/SVC-999999", {}),
            ("POST", "/v1/tickets/{ticket_id}/steps", f"/v1/tickets/{svc}/steps",
             {"data": orjson.dumps(step), "headers": {"Idempotency-Key": "e-1"}}),
            ("POST", "/v1/tickets/{ticket_id}/steps", "/v1/tickets/SVC-999999/steps",
             {"data": orjson.dumps(step), "headers": {"Idempotency-Key": "e-2"}}),
        ]:
            answers.append(await call(session, base, method, route, path, **kwargs))
    assert [a.status for a in answers] == [201, 200, 400, 400, 200, 200, 404, 201, 404]
    for answer in answers:
        if answer.status in (200, 201) and "steps" in answer.route:
            continue  # documented without a body
        check(upstream, answer)
