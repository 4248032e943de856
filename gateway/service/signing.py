"""Signed platform webhooks: HMAC-SHA256 over "timestamp.body" with a secret both sides share.

The timestamp is inside the signature and must be recent, so a captured request cannot be replayed later;
the comparison is constant-time. Header: `X-Platform-Signature: t=<unix seconds>,v1=<hex>`.
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "X-Platform-Signature"
MAX_AGE_SECONDS = 300.0


class SignatureError(Exception):
    """The request is not signed by the platform, or too old; the message says which."""


def sign(secret: str, body: bytes, timestamp: float) -> str:
    stamp = str(int(timestamp))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def verify(secret: str, body: bytes, header: str | None, now: float, max_age: float = MAX_AGE_SECONDS) -> None:
    if not header:
        raise SignatureError(f"missing {HEADER} header")
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp, mac = parts.get("t", ""), parts.get("v1", "")
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12 or not mac:
        raise SignatureError(f"{HEADER} must look like t=<unix seconds>,v1=<hex>")
    if abs(now - int(stamp)) > max_age:
        raise SignatureError(f"signature timestamp is {now - int(stamp):+.0f} s from now (allowed {max_age:.0f} s)")
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace")):
        raise SignatureError("signature does not match the body")
