"""Tokens an attacker or a broken client sends, which PyJWT's ``encode`` will not make.

``make_token`` (tests/infra/tokens.py) signs properly; these are built segment by segment:

- ``segments()``: any header and payload (any JSON, or raw bytes) with any signature;
- ``hmac_token()``: HS256 (or HS384/HS512) under any key bytes, a PEM public key included
  (the key-confusion attack, which PyJWT refuses to sign);
- ``unsigned()``: ``alg: none``;
- ``tampered()``: a signed token whose payload was changed after signing;
- ``padded()``: a well-formed token of a chosen size.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from tests.infra.tokens import make_token


def b64(data: bytes | str) -> str:
    """base64url without padding, as JWS segments are written."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def part(value: Any) -> str:
    """One segment: JSON of ``value``, or ``value`` itself when it is raw bytes."""
    return b64(value if isinstance(value, bytes) else json.dumps(value, separators=(",", ":")))


def segments(header: Any, payload: Any, signature: bytes = b"") -> str:
    return f"{part(header)}.{part(payload)}.{b64(signature)}"


def claims(sub: str = "alice", exp: float = 3600.0, **extra: Any) -> dict[str, Any]:
    """A payload for ``sub`` expiring ``exp`` seconds from now."""
    return {"sub": sub, "exp": int(time.time() + exp), **extra}


HMAC_DIGESTS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def hmac_token(payload: Any, key: bytes, alg: str = "HS256", **header: Any) -> str:
    """``alg`` (HS256) over ``payload`` with ``key`` as the secret, whatever ``key`` is and
    however short (PyJWT warns below the digest's size)."""
    signing_input = f"{part({'alg': alg, 'typ': 'JWT', **header})}.{part(payload)}"
    signature = hmac.new(key, signing_input.encode(), HMAC_DIGESTS[alg]).digest()
    return f"{signing_input}.{b64(signature)}"


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    """``alg: none`` (or a spelling of it) and an empty signature."""
    return segments({"alg": alg, "typ": "JWT"}, payload)


def tampered(token: str, **changes: Any) -> str:
    """``token`` with its payload changed (``sub="admin"``) and the old signature kept."""
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"{header}.{part({**body, **changes})}.{signature}"


def padded(size: int, **token_args: Any) -> str:
    """A token signed as ``make_token`` signs, with a filler claim making it ``size`` bytes
    (base64 grows the claim by 4/3)."""
    missing = size - len(make_token(**token_args))
    filler = "x" * max(0, -(-missing * 3 // 4))   # the claim's name and quotes add the rest
    return make_token(pad=filler, **token_args)
