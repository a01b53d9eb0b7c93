"""Who is on the other end: JWT verification turned into an :class:`Identity` or a close reason.

Sans-I/O: takes the request path and headers, returns an identity or raises :class:`AuthError`
whose ``reason`` is exactly what docs/protocol.md puts in the 1008 close frame.

With ``--jwks-url`` the key is the one the token's ``kid`` names in the JWKS cache
(bridge/jwks.py). A ``kid`` the cache lacks may be a key the identity provider just rotated
in, so :meth:`Authenticator.verify` (async) lets the cache refetch once (rate-limited) and
tries again; :meth:`Authenticator.authenticate` itself never waits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import jwt

from bridge.config import BridgeConfig
from bridge.jwks import Jwk
from marketbridge.metadata import ADMIN_SCOPE

AUTH_REQUIRED = "Authentication required"
INVALID_TOKEN = "Invalid token"
TOKEN_EXPIRED = "Token expired"
ANONYMOUS = "anonymous"


class AuthError(Exception):
    """Authentication failed; ``reason`` is the close reason sent with code 1008."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownKeyError(AuthError):
    """The token's ``kid`` is not in the JWKS cache: ``Invalid token`` unless a refetch finds it."""

    def __init__(self, kid: str) -> None:
        super().__init__(INVALID_TOKEN)
        self.kid = kid


class KeySource(Protocol):
    """Keys by ``kid`` (bridge.jwks_fetch.JwksClient): a cache read, and a refetch to await."""

    def key(self, kid: str) -> Jwk | None: ...
    async def refetch_for(self, kid: str) -> bool: ...


NO_SCOPES: frozenset[str] = frozenset()   # shared: an empty frozenset is 216 bytes a connection


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated user: ``user_id`` from ``sub``, scopes from the space-separated ``scope``."""

    user_id: str
    scopes: frozenset[str] = frozenset()
    # the token's ``exp`` (unix s), None without one; not part of who it is (equality, hashing)
    expires_at: float | None = field(default=None, compare=False)

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    @property
    def scope_header(self) -> str:
        """The value sent upstream as ``x-user-scope`` (sorted so it is stable)."""
        return " ".join(sorted(self.scopes))


def query_params(path: str) -> dict[str, str]:
    """First value of each query parameter of a request path (``/ws?token=..``)."""
    return {key: values[0] for key, values in parse_qs(urlsplit(path).query).items()}


def extract_token(path: str, headers: Mapping[str, str]) -> str | None:
    """The token from ``?token=`` or, failing that, ``Authorization: Bearer <token>``."""
    token = query_params(path).get("token")
    if token:
        return token
    header = headers.get("Authorization") or ""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def identity_from_claims(claims: Mapping[str, object]) -> Identity:
    """Map verified claims to an identity; a token without a usable ``sub`` is invalid."""
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError(INVALID_TOKEN)
    scope = claims.get("scope", "")
    if isinstance(scope, list):
        scope = " ".join(str(item) for item in scope)
    if not isinstance(scope, str):
        raise AuthError(INVALID_TOKEN)
    exp = claims.get("exp")
    expires_at = float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None
    scopes = scope.split()
    return Identity(sub, frozenset(scopes) if scopes else NO_SCOPES, expires_at)


class Authenticator:
    """Verifies tokens per the configuration (``--auth``, secret, public key or JWKS, algorithms)."""

    def __init__(self, config: BridgeConfig, jwks: KeySource | None = None) -> None:
        self.enabled = config.auth == "jwt"
        self.jwks = jwks
        self.key = config.jwt_secret or config.jwt_public_key or ""
        self.algorithms = list(config.algorithms)
        # aud/iss are checked only when configured (tokens of an IdP usually carry an aud).
        self.audience = config.jwt_audience
        self.issuer = config.jwt_issuer
        self.require = ["sub"] if config.jwt_allow_no_exp else ["sub", "exp"]

    def authenticate(self, token: str | None) -> Identity:
        if not self.enabled:
            return self._unverified(token)
        if not token:
            raise AuthError(AUTH_REQUIRED)
        key, algorithms = self._key_for(token)
        try:
            claims = jwt.decode(token, key, algorithms=algorithms,
                                audience=self.audience, issuer=self.issuer,
                                options={"require": self.require, "verify_aud": bool(self.audience)})
        except jwt.ExpiredSignatureError:
            raise AuthError(TOKEN_EXPIRED) from None
        except jwt.PyJWTError:
            raise AuthError(INVALID_TOKEN) from None
        return identity_from_claims(claims)

    async def verify(self, token: str | None) -> Identity:
        """:meth:`authenticate`, but a ``kid`` missing from the JWKS cache first waits for one
        refetch (at most one per 10 s, bridge.jwks): the identity provider may have rotated."""
        try:
            return self.authenticate(token)
        except UnknownKeyError as exc:
            if self.jwks is None or not await self.jwks.refetch_for(exc.kid):
                raise
        return self.authenticate(token)

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        """The key and algorithms to verify ``token`` with: the configured key, or the JWKS
        key its ``kid`` names (only that key's algorithm, so a header cannot pick another)."""
        if self.jwks is None:
            return self.key, self.algorithms
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError(INVALID_TOKEN) from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or header.get("alg") not in self.algorithms:
            raise AuthError(INVALID_TOKEN)   # no kid, or an algorithm no refetch could serve
        jwk = self.jwks.key(kid)
        if jwk is None:
            raise UnknownKeyError(kid)
        return jwk.key, [jwk.algorithm]

    @staticmethod
    def _unverified(token: str | None) -> Identity:
        """``--auth none`` (development): claims are read but not verified; no token => anonymous."""
        if not token:
            return Identity(ANONYMOUS)
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError(INVALID_TOKEN) from None
        return identity_from_claims(claims)
