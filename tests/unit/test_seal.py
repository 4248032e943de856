import hashlib
import hmac
import os
import stat
from pathlib import Path

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.diagnosis.seal import (
    ALGORITHM,
    LEGACY_ALGORITHM,
    SealError,
    canonical,
    differences,
    jcs,
    key_id,
    load_or_create_key,
    seal,
    verify,
)

TICKET = {"idempotency_key": "k1", "fault": {"code": "AC-CND-01", "title": {"en": "Condenser", "zh": "冷凝器"}},
          "evidence": {"observed": [{"quantity": "discharge_pressure", "value": 4105.0}], "window": {"ts": [1, 2]}},
          "price": {"total_band": [330.0, 670.0]}}


def test_key_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "var" / "gateway.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_key(path) == key
    path.write_bytes(b"short")
    with pytest.raises(SealError, match="32 bytes"):
        load_or_create_key(path)


def test_a_sealed_ticket_verifies(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k")
    sealed = seal(TICKET, key)
    assert verify(sealed, key).valid
    assert verify(orjson.loads(orjson.dumps(sealed)), key, sealed).valid  # survives a JSON round trip


def test_a_one_character_change_is_caught_and_located(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k")
    sealed = seal(TICKET, key)
    text = orjson.dumps(sealed).decode()
    for original, forged in (("4105.0", "4106.0"), ("AC-CND-01", "AC-CND-02"), ("670.0", "970.0")):
        tampered = orjson.loads(text.replace(original, forged, 1))
        verdict = verify(tampered, key, sealed)
        assert not verdict.valid, forged
        assert len(verdict.changed) == 1 and "changed $." in verdict.reason, verdict
    tampered = orjson.loads(text.replace("冷凝器", "冷凝机", 1))
    assert verify(tampered, key, sealed).changed == ["$.fault.title.zh"]


def test_a_forged_seal_or_another_key_is_rejected(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k")
    other = load_or_create_key(tmp_path / "other")
    sealed = seal(TICKET, key)
    forged = {**seal({**TICKET, "price": {"total_band": [0.0, 1.0]}}, key)}
    forged["seal"] = {**forged["seal"], "hmac": sealed["seal"]["hmac"]}
    assert "HMAC" in verify(forged, key).reason
    assert "another key" in verify(seal(TICKET, other), key).reason
    assert verify(TICKET, key).reason == "the ticket carries no seal"


def test_differences() -> None:
    assert differences({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}], "c": 1}) == ["$.a[1].b", "$.c"]


def test_the_digest_is_over_rfc8785_canonical_json(tmp_path: Path) -> None:
    """JCS writes numbers as ECMAScript does (3800.0 is 3800, 1e21 is 1e+21) and sorts keys by UTF-16 units."""
    assert canonical({"b": 3800.0, "a": [1e21, 0.1, -0.0], "é": 1, "z": "é"}) == \
        '{"a":[1e+21,0.1,0],"b":3800,"z":"é","é":1}'.encode()
    key = load_or_create_key(tmp_path / "k")
    sealed = seal(TICKET, key)
    assert sealed["seal"]["version"] == 2 and sealed["seal"]["algorithm"] == ALGORITHM
    assert sealed["seal"]["sha256"] == hashlib.sha256(canonical(TICKET)).hexdigest()


def test_a_ticket_sealed_before_jcs_still_verifies(tmp_path: Path) -> None:
    """Version 1 seals (orjson, sorted keys: 4105.0 stays 4105.0) are checked the way they were made."""
    key = load_or_create_key(tmp_path / "k")
    digest = hashlib.sha256(orjson.dumps(TICKET, option=orjson.OPT_SORT_KEYS)).hexdigest()
    old = {**TICKET, "seal": {"algorithm": LEGACY_ALGORITHM, "sha256": digest, "key_id": key_id(key),
                              "hmac": hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()}}
    assert verify(old, key).valid
    assert not verify({**old, "price": {"total_band": [0.0, 1.0]}}, key).valid
    assert "unknown seal algorithm" in verify({**old, "seal": {**old["seal"], "algorithm": "md5"}}, key).reason


_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6).map(lambda f: round(f, 3)),  # telemetry as the evidence window carries it
    st.integers(-2**60, 2**60), st.integers(-10**6, 10**6).map(float),
    st.sampled_from([0.0, -0.0, 1e-4, 9.99e-5, 1e16, 1e16 - 2, 2.0**53, -2.0**53, 2**53, 5e-324,
                     1.7976931348623157e308]))
_json_values = st.recursive(
    st.none() | st.booleans() | _numbers | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=25)


@given(_json_values)
@settings(max_examples=400, deadline=None)
def test_the_fast_canonical_form_is_rfc8785_byte_for_byte(value: object) -> None:
    """The orjson path writes what rfc8785 writes, or hands the value to it (which then refuses it the same
    way): keys in any script, control characters, integral and tiny floats, integers past 2**53."""
    try:
        expected: bytes | type[Exception] = rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        expected = type(exc)
    try:
        got: bytes | type[Exception] = jcs(value)
    except rfc8785.CanonicalizationError as exc:
        got = type(exc)
    assert got == expected
