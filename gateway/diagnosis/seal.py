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
    return rfc8785.dumps(unsealed)


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
