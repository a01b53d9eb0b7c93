"""Signing keys of an identity provider, for JWKS tests (bridge/jwks.py).

``SigningKeyFactory()`` gives an RS256 key with a fresh ``kid`` (``algorithm="ES256"`` for a
P-256 one); ``.jwk()`` is the public JWK a key server publishes for it, ``.token()`` a JWT it
signs with that ``kid`` in the header. ``jwks(*keys)`` is the document that publishes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import factory
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.infra.tokens import make_token

NO_KID = object()   # ``token(kid=NO_KID)``: a token whose header has no ``kid`` at all


def generate(algorithm: str, rsa_bits: int = 2048) -> Any:
    """A new private key for ``algorithm`` (RS256: RSA ``rsa_bits``; ES256: EC P-256)."""
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)


@dataclass(frozen=True)
class SigningKey:
    """A private key, its ``kid`` and the one algorithm it signs with."""

    kid: str
    algorithm: str
    private_key: Any = field(repr=False)

    def jwk(self, **fields: Any) -> dict[str, Any]:
        """The public JWK (``kid``, ``alg``, ``use: sig``); ``fields`` override or add members,
        a value of None removes one."""
        kind = ECAlgorithm if self.algorithm == "ES256" else RSAAlgorithm
        jwk: dict[str, Any] = kind.to_jwk(self.private_key.public_key(), as_dict=True)
        jwk.update(kid=self.kid, alg=self.algorithm, use="sig")
        jwk.update(fields)
        return {name: value for name, value in jwk.items() if value is not None}

    def token(self, sub: str = "alice", kid: object = None, **claims: Any) -> str:
        """A JWT for ``sub`` signed by this key, naming ``kid`` (this key's by default;
        ``NO_KID``: none)."""
        headers = {} if kid is NO_KID else {"kid": self.kid if kid is None else kid}
        return make_token(sub, algorithm=self.algorithm, key=self.private_key, headers=headers,
                          **claims)


class SigningKeyFactory(factory.Factory):
    class Meta:
        model = SigningKey

    kid = factory.Sequence(lambda n: f"key-{n:03d}")
    algorithm = "RS256"
    private_key = factory.LazyAttribute(lambda key: generate(key.algorithm))


def jwks(*keys: SigningKey | dict[str, Any]) -> dict[str, Any]:
    """A JWK Set publishing ``keys`` (a SigningKey's public JWK, or a raw JWK dict as given)."""
    return {"keys": [key.jwk() if isinstance(key, SigningKey) else key for key in keys]}
