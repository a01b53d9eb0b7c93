"""Who may say which user a call runs for: the trust model of ``x-user-id`` / ``x-user-scope``.

The bridge authenticates WebSocket users and forwards them as user metadata; the cache service
cannot check a user's token itself, so it must decide whom to believe. Two modes
(docs/cache_service.md, "Trust model"):

- ``any`` (the local default): every caller's user metadata is believed, as before; only the
  network (or mTLS, which proves a peer holds a certificate of the CA) keeps strangers out.
- ``mtls``: user metadata is believed only from a peer whose verified client certificate names
  one of the allowed peers (its CN or a subject alternative name, matched exactly). Any other
  peer's call that carries ``x-user-id`` or ``x-user-scope`` (even empty) is refused with
  PERMISSION_DENIED: the peer is authenticated but not entitled to speak for users. A call
  without user metadata is an internal writer's, from any authenticated peer, as before.

Sans-I/O: the caller passes in the metadata keys, the peer's names (from gRPC's auth context)
and the clock; the gRPC glue is ``cache_service.interceptor.UserMetadataInterceptor``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from marketbridge.log_throttle import Throttle
from marketbridge.metadata import SCOPE_HEADER, USER_HEADER

ANY, MTLS = "any", "mtls"
MODES = (ANY, MTLS)
USER_KEYS = frozenset({USER_HEADER, SCOPE_HEADER})
# The auth-context properties that name a verified client certificate (gRPC's x509 peer).
NAME_PROPERTIES = ("x509_common_name", "x509_subject_alternative_name")
REFUSED = "this peer may not send user metadata (x-user-id, x-user-scope)"


def carries_user_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """Whether a call claims to run for a user: the presence of a key counts, not its value,
    so an untrusted peer cannot probe the gate with empty values."""
    return any(key in USER_KEYS for key, _value in metadata or ())


@dataclass(frozen=True)
class Peer:
    """The names of a call's verified client certificate: CN first, then SANs; () if none."""

    names: tuple[str, ...] = ()

    @classmethod
    def from_auth_context(cls, auth: Mapping[str, Iterable[bytes]]) -> Peer:
        """Read the names from ``context.auth_context()`` (property -> list of bytes)."""
        names: list[str] = []
        for prop in NAME_PROPERTIES:
            for value in auth.get(prop, ()):
                name = value.decode(errors="replace")
                if name not in names:
                    names.append(name)
        return cls(tuple(names))

    @property
    def shown(self) -> str:
        """How logs name the peer (its certificate's names, or that it has none)."""
        return ", ".join(self.names) if self.names else "no client certificate"


@dataclass(frozen=True)
class UserMetadataPolicy:
    """``--user-metadata-from`` and ``--user-metadata-peers``: whose user metadata counts."""

    mode: str = ANY
    peers: frozenset[str] = frozenset()

    @property
    def checks_peers(self) -> bool:
        """False in ``any`` mode: nothing to check, so the server installs no gate at all."""
        return self.mode == MTLS

    def refusal(self, metadata: Iterable[tuple[str, str | bytes]] | None, peer: Peer) -> str | None:
        """Why a call with this metadata from this peer must be refused, or None if it may go on."""
        if not self.checks_peers or not carries_user_metadata(metadata):
            return None
        if self.peers.intersection(peer.names):
            return None
        return REFUSED


class LogThrottle:
    """The one-reason view of :class:`marketbridge.log_throttle.Throttle` this module logs by:
    a misbehaving peer cannot flood the log, and the next line says how many were left out."""

    def __init__(self, interval_s: float) -> None:
        self._throttle = Throttle(interval_s)

    def admit(self, now: float) -> int | None:
        """None: do not log this one. Else log it, with the count of those held back before it."""
        count = self._throttle.note("refused", now)
        return count - 1 if count else None
