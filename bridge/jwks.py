"""Keys from a JWKS document (RFC 7517) by ``kid``: parsing, the cache and when to refetch.

SPEC §9.3: with ``--jwks-url`` the bridge verifies RS256/ES256 tokens with the key the token's
``kid`` names, from a cached JSON Web Key Set that is refetched every ``--jwks-refresh-s``
and, when a token names a ``kid`` the cache lacks (the identity provider rotated its keys),
at most once per 10 s. Sans-I/O: this module turns a document's bytes into keys and keeps the
cache's state with the times it is given; :mod:`bridge.jwks_fetch` does the HTTP and the
waiting, :class:`bridge.auth.Authenticator` the verification.

A document is taken key by key: one bad key (a field missing, an unsupported ``kty`` or
``alg``) is skipped with its reason and the good keys of the same document are used. A
document that yields no key at all (not JSON, no ``keys``, only bad keys) is a failed fetch:
the previous keys stay, since an empty set would refuse every user on one bad deploy of the
identity provider.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

# alg -> the kty (and, for EC, the curve) its keys must have. SPEC §9.3 names these two.
JWKS_ALGORITHMS: Mapping[str, tuple[str, str | None]] = {"RS256": ("RSA", None), "ES256": ("EC", "P-256")}
UNKNOWN_KID_INTERVAL_S = 10.0   # SPEC §9.3: a refetch for an unknown kid at most this often
FAILURE_RETRY_S = 10.0          # after a failed fetch, the next periodic one comes this soon
MAX_DOCUMENT_BYTES = 1 << 20    # real key sets are a few KiB; more is not a key set
MIN_RSA_BITS = 2048             # shorter RSA keys are factorable; an IdP publishing one is broken
PRIVATE_FIELDS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
REQUIRED_FIELDS = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}

# Why a key of a document was not used: the ``reason`` label of bridge_jwks_skipped_keys_total.
MISSING_KID, DUPLICATE_KID, NOT_FOR_SIGNING = "missing_kid", "duplicate_kid", "not_for_signing"
UNSUPPORTED_KTY, UNSUPPORTED_ALG, BAD_FIELDS = "unsupported_kty", "unsupported_alg", "bad_fields"
# Why a fetch failed: the ``reason`` label of bridge_jwks_fetch_failures_total.
UNREACHABLE, TLS, TIMEOUT, HTTP_STATUS = "unreachable", "tls", "timeout", "http_status"
MALFORMED, NO_USABLE_KEYS, ERROR = "malformed", "no_usable_keys", "error"
FAILURE_REASONS = (UNREACHABLE, TLS, TIMEOUT, HTTP_STATUS, MALFORMED, NO_USABLE_KEYS, ERROR)


class JwksError(Exception):
    """A fetch that yields no keys; ``reason`` is its metric label, the message its log line."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class SkippedKey(Exception):
    """One key of a document that cannot be used, and why (``reason``: a metric label)."""

    def __init__(self, reason: str, kid: str | None, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.kid = kid


@dataclass(frozen=True)
class Jwk:
    """A verification key: its ``kid``, the one algorithm it verifies, the public key object."""

    kid: str
    algorithm: str
    key: Any = field(repr=False)


@dataclass(frozen=True)
class JwksDocument:
    """What a document yielded: usable keys by ``kid``, and the keys it skipped (with why)."""

    keys: dict[str, Jwk]
    skipped: tuple[SkippedKey, ...] = ()


def parse_jwks(body: bytes, algorithms: Iterable[str]) -> JwksDocument:
    """The keys of a JWKS document that verify one of ``algorithms`` (RS256/ES256 only).

    Raises :class:`JwksError` when the document as a whole is unusable (not JSON, not an object
    with a ``keys`` list); a bad key is only skipped."""
    if len(body) > MAX_DOCUMENT_BYTES:
        raise JwksError(MALFORMED, f"document of {len(body)} bytes, over {MAX_DOCUMENT_BYTES}")
    try:
        document = json.loads(body)
    except ValueError as exc:   # UnicodeDecodeError is a ValueError too
        raise JwksError(MALFORMED, f"not JSON ({exc})") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError(MALFORMED, "not a JWK Set: no \"keys\" list")
    allowed = frozenset(algorithms) & JWKS_ALGORITHMS.keys()
    keys: dict[str, Jwk] = {}
    skipped: list[SkippedKey] = []
    for entry in entries:
        try:
            key = parse_key(entry, allowed)
            if key.kid in keys:
                raise SkippedKey(DUPLICATE_KID, key.kid, "a second key with this kid (the first is used)")
            keys[key.kid] = key
        except SkippedKey as skip:
            skipped.append(skip)
    return JwksDocument(keys, tuple(skipped))


def parse_key(entry: object, allowed: frozenset[str]) -> Jwk:
    """One JWK as a verification key, or :class:`SkippedKey` saying why it is not one."""
    if not isinstance(entry, dict):
        raise SkippedKey(BAD_FIELDS, None, f"not a JSON object: {type(entry).__name__}")
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid:
        raise SkippedKey(MISSING_KID, None, "no \"kid\": tokens could not name it")
    if entry.get("use", "sig") != "sig":
        raise SkippedKey(NOT_FOR_SIGNING, kid, f"\"use\" is {entry.get('use')!r}, not \"sig\"")
    algorithm = key_algorithm(entry, kid, allowed)
    private = [name for name in PRIVATE_FIELDS if name in entry]
    if private:
        raise SkippedKey(BAD_FIELDS, kid, f"holds private key material ({', '.join(private)}): "
                                          "a JWKS must publish public keys only")
    kty = JWKS_ALGORITHMS[algorithm][0]
    missing = [name for name in REQUIRED_FIELDS[kty]
               if not isinstance(entry.get(name), str) or not entry[name]]
    if missing:
        raise SkippedKey(BAD_FIELDS, kid, f"{kty} key without string {', '.join(missing)}")
    return Jwk(kid, algorithm, public_key(entry, kid, kty))


def key_algorithm(entry: Mapping[str, Any], kid: str, allowed: frozenset[str]) -> str:
    """The algorithm a key verifies: its ``alg``, else implied by ``kty`` (and ``crv``)."""
    kty, alg, crv = entry.get("kty"), entry.get("alg"), entry.get("crv")
    if kty not in ("RSA", "EC"):
        raise SkippedKey(UNSUPPORTED_KTY, kid, f"kty {kty!r} is not RSA or EC")
    if alg is None:
        alg = "RS256" if kty == "RSA" else "ES256" if crv == "P-256" else None
    if not isinstance(alg, str) or alg not in allowed:   # (a list is not hashable)
        raise SkippedKey(UNSUPPORTED_ALG, kid, f"alg {alg!r} (kty {kty!r}, crv {crv!r}) is not "
                                               f"one of {', '.join(sorted(allowed))}")
    want_kty, want_crv = JWKS_ALGORITHMS[alg]
    if kty != want_kty or (want_crv is not None and crv != want_crv):
        raise SkippedKey(BAD_FIELDS, kid, f"alg {alg} needs kty {want_kty!r}, crv {want_crv!r}; "
                                          f"got kty {kty!r}, crv {crv!r}")
    return str(alg)


def public_key(entry: Mapping[str, Any], kid: str, kty: str) -> Any:
    """The ``cryptography`` public key of a JWK whose fields were checked to be strings."""
    try:
        key = (RSAAlgorithm if kty == "RSA" else ECAlgorithm).from_jwk(dict(entry))
    except (InvalidKeyError, ValueError) as exc:   # bad base64, a point off the curve, n = 0
        raise SkippedKey(BAD_FIELDS, kid, f"not a valid {kty} public key ({exc})") from None
    if kty == "RSA" and key.key_size < MIN_RSA_BITS:
        raise SkippedKey(BAD_FIELDS, kid, f"RSA key of {key.key_size} bits (at least {MIN_RSA_BITS})")
    return key


@dataclass(frozen=True)
class KeyChange:
    """What a successful fetch changed in the cache (for its log line)."""

    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass
class JwksCache:
    """The cached keys and the fetch history that decides what comes next.

    Times are a monotonic clock's, passed in; ``refresh_s`` is ``--jwks-refresh-s``."""

    refresh_s: float
    keys: dict[str, Jwk] = field(default_factory=dict)
    attempted_at: float | None = None       # the last fetch's start
    succeeded_at: float | None = None       # the last fetch that replaced the keys
    failing_since: float | None = None      # the first failure since the last success
    failure: str | None = None              # the last failure's message, None after a success
    unknown_kid_fetch_at: float | None = None

    def key(self, kid: str) -> Jwk | None:
        return self.keys.get(kid)

    def unknown_kid_fetch_allowed(self, now: float) -> bool:
        """May a token's unknown ``kid`` trigger a fetch now? At most once per 10 s, so tokens
        with made-up ``kid``s cannot turn the bridge into a load generator for the IdP."""
        last = self.unknown_kid_fetch_at
        return last is None or now - last >= UNKNOWN_KID_INTERVAL_S

    def started(self, now: float, unknown_kid: bool = False) -> None:
        self.attempted_at = now
        if unknown_kid:
            self.unknown_kid_fetch_at = now

    def next_fetch_at(self, now: float) -> float:
        """When the periodic fetch is due: ``refresh_s`` after the last attempt, sooner
        (``FAILURE_RETRY_S``) while failing, at once when none was made."""
        if self.attempted_at is None:
            return now
        wait = min(self.refresh_s, FAILURE_RETRY_S) if self.failure is not None else self.refresh_s
        return self.attempted_at + wait

    def succeeded(self, document: JwksDocument, now: float) -> KeyChange:
        """Replace the keys with a document's: a key no longer published is gone from now on.

        A document with no usable key raises :class:`JwksError` and changes nothing."""
        if not document.keys:
            raise JwksError(NO_USABLE_KEYS, f"no usable key among {len(document.skipped)}")
        change = KeyChange(tuple(sorted(document.keys.keys() - self.keys.keys())),
                           tuple(sorted(self.keys.keys() - document.keys.keys())))
        self.keys = dict(document.keys)
        self.succeeded_at, self.failing_since, self.failure = now, None, None
        return change

    def failed(self, message: str, now: float) -> None:
        """A fetch that changed nothing: the cached keys stay in use."""
        if self.failure is None:
            self.failing_since = now
        self.failure = message

    def not_ready_reason(self) -> str | None:
        """``/readyz`` 503 while there is no key at all: every token would be refused."""
        if self.keys:
            return None
        return f"jwks: no keys ({self.failure or 'first fetch not done'})"

    def detail(self, now: float) -> str | None:
        """The ``/readyz`` note while the key server fails but cached keys are served."""
        if self.failure is None or not self.keys or self.succeeded_at is None:
            return None
        assert self.failing_since is not None
        return (f"jwks: key server failing for {now - self.failing_since:.0f} s ({self.failure}); "
                f"using {len(self.keys)} cached keys fetched {now - self.succeeded_at:.0f} s ago")
