"""The API documents are valid OpenAPI 3 (a platform generates its client from docs/upstream-api.yaml)."""

from __future__ import annotations

import pytest
import yaml
from openapi_spec_validator import validate

from gateway.config import PROJECT_ROOT


@pytest.mark.parametrize("name", ["web-api.yaml", "upstream-api.yaml"])
def test_the_api_document_is_valid_openapi(name: str) -> None:
    document = yaml.safe_load((PROJECT_ROOT / "docs" / name).read_text(encoding="utf-8"))
    validate(document)


def test_an_added_appliance_type_is_a_valid_ticket_type() -> None:
    document = yaml.safe_load((PROJECT_ROOT / "docs" / "upstream-api.yaml").read_text(encoding="utf-8"))
    appliance = document["components"]["schemas"]["Ticket"]["properties"]["appliance"]["properties"]["type"]
    assert "enum" not in appliance and appliance["pattern"] == "^[a-z][a-z0-9_]{0,63}$"
