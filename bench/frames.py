"""Decoding of the frames the fan-out clients receive (docs/protocol.md updates and batches).

Both the bridge (``update`` frames, or ``batch`` frames with ``?batch_ms=``) and the pub/sub
baseline (which relays ``update`` frames verbatim) are read by the same code, so the two are
measured identically.
"""

from __future__ import annotations

from typing import Any

try:  # orjson is in the bench extra; the stdlib decoder is the fallback
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - exercised only without the bench extra
    from json import loads as _loads


def decode(raw: bytes | str) -> dict[str, Any]:
    """Parse one text frame into its JSON object."""
    value = _loads(raw)
    if not isinstance(value, dict):
        raise TypeError(f"frame is not a JSON object: {raw[:80]!r}")
    return value


def ticker_updates(frame: dict[str, Any], action: str = "ticker_update") -> list[dict[str, Any]]:
    """The ``action`` payloads (``ticker_update`` unless said) carried by a frame (none for
    other frame types)."""
    kind = frame.get("type")
    if kind == "update":
        updates = [frame]
    elif kind == "batch":
        updates = frame.get("updates") or []
    else:
        return []
    return [u["result"] for u in updates if u.get("action") == action]


def update_entries(frame: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The whole ``action`` updates of a frame (``subscription_id``, ``seq``, ``result``)."""
    kind = frame.get("type")
    if kind == "update":
        updates = [frame]
    elif kind == "batch":
        updates = frame.get("updates") or []
    else:
        return []
    return [u for u in updates if u.get("action") == action]
