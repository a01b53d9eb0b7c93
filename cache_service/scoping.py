"""Who is calling, from gRPC metadata, and which user's records they may see.

The bridge authenticates WebSocket users and forwards them as ``x-user-id`` and
``x-user-scope`` (space-separated, ``admin`` sees all). A call without ``x-user-id`` comes from
an internal service (a feed handler, the order router) and sees everything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cache_service.errors import PermissionDenied
from marketbridge.metadata import ADMIN_SCOPE, SCOPE_HEADER, USER_HEADER


@dataclass(frozen=True)
class Caller:
    """The identity a request runs as. ``user_id`` None means an internal caller."""

    user_id: str | None = None
    admin: bool = False

    @property
    def sees_everyone(self) -> bool:
        return self.user_id is None or self.admin

    def may_see(self, owner: str) -> bool:
        """Whether a record owned by ``owner`` is visible to this caller."""
        return self.sees_everyone or owner == self.user_id

    def user_filter(self, requested: str) -> str:
        """The user a list/stream is restricted to ("" = every user).

        Admin and internal callers choose; a user gets their own records, and asking for
        someone else's is refused rather than silently ignored.
        """
        if self.sees_everyone:
            return requested
        assert self.user_id is not None
        if requested and requested != self.user_id:
            raise PermissionDenied("user_id filter is only allowed for admin and internal callers")
        return self.user_id


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    """Read the caller from invocation metadata (keys are lower-case in gRPC)."""
    user_id: str | None = None
    scopes: list[str] = []
    for key, value in metadata or ():
        text = value.decode() if isinstance(value, bytes) else value
        if key == USER_HEADER and text:
            user_id = text
        elif key == SCOPE_HEADER:
            scopes.extend(text.split())
    return Caller(user_id=user_id, admin=user_id is not None and ADMIN_SCOPE in scopes)
