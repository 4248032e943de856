"""Seal a ticket so nobody can alter its diagnosis or evidence unnoticed.

The seal is a SHA-256 over the ticket's canonical JSON (RFC 8785, the JSON Canonicalization Scheme, the seal
itself left out) and an HMAC-SHA256 of that hex digest with the gateway's own key, created on first run with
owner-only permissions. The digest shows that the document changed; the HMAC shows that it came from this
gateway. JCS is what a platform written in Java, Go or JavaScript can recompute (its numbers are ECMAScript's:
3800.0 is `3800`). Seals made before it (version 1: orjson with sorted keys) still verify.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import rfc8785

ALGORITHM = "jcs-sha256+hmac-sha256"  # seal version 2: RFC 8785 canonical JSON
LEGACY_ALGORITHM = "sha256+hmac-sha256"  # version 1: orjson, sorted keys (tickets sealed before JCS)
KEY_BYTES = 32


class SealError(Exception):
    """The gateway key cannot be read or created; the message names the file."""


def canonical(document: dict[str, Any], algorithm: str = ALGORITHM) -> bytes:
    """The bytes the digest is taken over: the document without its seal, canonicalised as `algorithm` says."""
    unsealed = {k: v for k, v in document.items() if k != "seal"}
    if algorithm == LEGACY_ALGORITHM:
        return orjson.dumps(unsealed, option=orjson.OPT_SORT_KEYS)
    return jcs(unsealed)


def jcs(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON value. The rfc8785 package is pure Python (2.3 ms for a 20 KB ticket, on the
    pipeline thread); orjson with sorted keys writes the same bytes once integral floats are integers, when
    every key is ASCII (RFC 8785 sorts by UTF-16 unit, orjson by code point) and every other float is in the
    range both write the same way. Anything else (a rare number, a non-ASCII key, a value rfc8785 refuses)
    goes to rfc8785 itself; tests/unit/test_seal.py compares the two on generated documents."""
    try:
        return orjson.dumps(_orjson_ready(value), option=orjson.OPT_SORT_KEYS)
    except (_Elsewhere, orjson.JSONEncodeError):
        return rfc8785.dumps(value)


class _Elsewhere(Exception):
    """This value is left to rfc8785."""


_EXACT_INTEGER = 2**53  # beyond it a JSON number is not one integer for every reader (rfc8785 refuses it)
_FIXED_LOW, _FIXED_HIGH = 1e-4, 1e16  # where shortest round-trip floats are written alike (no exponent)


def _orjson_ready(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        if value.is_integer():
            if -_EXACT_INTEGER < value < _EXACT_INTEGER:
                return int(value)  # RFC 8785 writes 3.0 as 3 (and -0.0 as 0)
            raise _Elsewhere
        if _FIXED_LOW <= abs(value) < _FIXED_HIGH:
            return value
        raise _Elsewhere
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -_EXACT_INTEGER < value < _EXACT_INTEGER:
            return value
        raise _Elsewhere
    if kind is dict:
        if not all(type(k) is str and k.isascii() for k in value):
            raise _Elsewhere
        return {k: _orjson_ready(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_orjson_ready(v) for v in value]
    raise _Elsewhere


def load_or_create_key(path: Path) -> bytes:
    """The gateway's sealing key; created (0600) the first time."""
    try:
        if path.exists():
            key = path.read_bytes()
            if len(key) != KEY_BYTES:
                raise SealError(f"{path}: a sealing key is {KEY_BYTES} bytes, this file has {len(key)}")
            return key
        path.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(KEY_BYTES)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key)
        return key
    except OSError as exc:
        raise SealError(f"cannot read or create the sealing key {path}: {exc}") from exc


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"key-id|" + key).hexdigest()[:16]


def seal(document: dict[str, Any], key: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(canonical(document)).hexdigest()
    mac = hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()
    return {**document, "seal": {"version": 2, "algorithm": ALGORITHM, "canonicalization": "RFC 8785",
                                 "sha256": digest, "hmac": mac, "key_id": key_id(key)}}


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reason: str
    changed: list[str] = field(default_factory=list)  # JSON paths that differ from the gateway's original


def verify(document: dict[str, Any], key: bytes, original: dict[str, Any] | None = None) -> Verdict:
    stamp = document.get("seal")
    if not isinstance(stamp, dict):
        return Verdict(False, "the ticket carries no seal")
    algorithm = stamp.get("algorithm")
    if algorithm not in (ALGORITHM, LEGACY_ALGORITHM):
        return Verdict(False, f"unknown seal algorithm {algorithm!r}; this gateway knows {ALGORITHM} and "
                              f"{LEGACY_ALGORITHM} (version 1)")
    if stamp.get("key_id") != key_id(key):
        return Verdict(False, f"sealed with another key ({stamp.get('key_id')}); this gateway's is {key_id(key)}")
    try:
        digest = hashlib.sha256(canonical(document, str(algorithm))).hexdigest()
    except rfc8785.CanonicalizationError as exc:  # a number no JSON peer can read the same way
        return Verdict(False, f"the ticket cannot be canonicalised (RFC 8785): {exc}")
    expected_mac = hmac.new(key, str(stamp.get("sha256", "")).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected_mac, str(stamp.get("hmac", ""))):
        return Verdict(False, "the seal itself was altered (its HMAC does not match)")
    if digest != stamp.get("sha256"):
        changed = differences(original, document) if original is not None else []
        where = f": changed {', '.join(changed)}" if changed else " (the gateway's copy would show what changed)"
        return Verdict(False, f"the ticket was altered after sealing{where}", changed)
    return Verdict(True, "seal valid: the ticket is exactly as this gateway issued it")


def differences(original: Any, given: Any, path: str = "$") -> list[str]:
    """JSON paths at which `given` differs from `original` (the seal aside)."""
    if isinstance(original, dict) and isinstance(given, dict):
        keys = sorted(set(original) | set(given))
        return [p for k in keys if not (path == "$" and k == "seal")
                for p in differences(original.get(k, _MISSING), given.get(k, _MISSING), f"{path}.{k}")]
    if isinstance(original, list) and isinstance(given, list) and len(original) == len(given):
        return [p for i, (a, b) in enumerate(zip(original, given, strict=True))
                for p in differences(a, b, f"{path}[{i}]")]
    return [] if original == given else [path]


_MISSING = object()
