"""Which web pages may open a connection: the ``Origin`` check of ``--allowed-origins``.

A browser sends ``Origin`` (the page's scheme, host and port) with every WebSocket handshake,
and any page can try to connect with a token it holds (a leaked one, or one another page
stored). So the bridge answers a handshake whose ``Origin`` is set and not allowed with HTTP
403 before upgrading (SPEC §9.3). Clients that are not browsers send no ``Origin``; they are
not refused, since the header proves nothing for them (they can send any value).

``*`` (the default, for local use) allows every origin. Otherwise the list holds exact
origins, compared case-insensitively on scheme and host, with the default port dropped
(``https://app.example.com:443`` is ``https://app.example.com``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

ANY = "*"
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalize_origin(text: str) -> str:
    """``scheme://host[:port]`` in lower case without a default port; ValueError when ``text``
    is not an origin (a path, a query, no host, another scheme)."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} is not an origin like https://app.example.com")
    port = parts.port   # ValueError for a bad port
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + ("" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}")


@dataclass(frozen=True)
class OriginPolicy:
    """The allowed origins (normalized); ``any_origin`` for ``*``."""

    origins: frozenset[str]
    any_origin: bool

    @classmethod
    def parse(cls, entries: tuple[str, ...]) -> OriginPolicy:
        """From ``--allowed-origins`` entries; ValueError naming the first bad one."""
        if ANY in entries:
            return cls(frozenset(), True)
        return cls(frozenset(normalize_origin(entry) for entry in entries), False)

    def allows(self, origin: str | None) -> bool:
        """Whether a handshake with this ``Origin`` header (None: absent) may go ahead."""
        if origin is None or self.any_origin:
            return True
        try:
            return normalize_origin(origin) in self.origins
        except ValueError:
            return False   # "null" (a sandboxed page, a file), or garbage
