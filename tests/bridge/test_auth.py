"""Tokens: where they come from, how they are verified, what a refusal says."""

from __future__ import annotations

import pytest

from bridge.auth import Authenticator, AuthError, Identity, extract_token
from bridge.config import BridgeConfig, load_config
from tests.infra.tokens import TEST_SECRET, make_token


def _auth(**kw: object) -> Authenticator:
    return Authenticator(BridgeConfig(jwt_secret=TEST_SECRET, **kw))  # type: ignore[arg-type]


def test_auth_results() -> None:
    auth = _auth()
    who = auth.authenticate(make_token("bob", scope="read admin"))
    assert who == Identity("bob", frozenset({"read", "admin"})) and who.is_admin
    assert who.scope_header == "admin read"
    for token, reason in [(None, "Authentication required"), ("", "Authentication required"),
                          ("garbage", "Invalid token"),
                          (make_token("bob", secret="other-secret-of-sufficient-length-xx"), "Invalid token"),
                          (make_token(None), "Invalid token"),
                          (make_token("bob", exp=-60), "Token expired")]:
        with pytest.raises(AuthError) as info:
            auth.authenticate(token)
        assert info.value.reason == reason


def test_audience_and_issuer_checked_only_when_configured() -> None:
    token = make_token("erin", aud="trading", iss="idp")
    assert _auth().authenticate(token).user_id == "erin"
    assert _auth(jwt_audience="trading", jwt_issuer="idp").authenticate(token).user_id == "erin"
    for auth in (_auth(jwt_audience="other"), _auth(jwt_issuer="other")):
        with pytest.raises(AuthError, match="Invalid token"):
            auth.authenticate(token)


def test_auth_none_reads_claims_without_verifying() -> None:
    auth = Authenticator(BridgeConfig(auth="none"))
    assert auth.authenticate(None).user_id == "anonymous"
    assert auth.authenticate(make_token("carol", secret="whatever-secret-0123456789abcdef")).user_id == "carol"
    with pytest.raises(AuthError):
        auth.authenticate("garbage")


def test_public_key_auth(tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    config = load_config(["--jwt-public-key-file", str(path)], environ={})
    assert config.algorithms == ("RS256", "ES256")
    token = make_token("dave", algorithm="ES256", key=key)
    assert Authenticator(config).authenticate(token).user_id == "dave"


def test_token_sources() -> None:
    assert extract_token("/ws?token=abc", {}) == "abc"
    assert extract_token("/ws", {"Authorization": "Bearer xyz"}) == "xyz"
    assert extract_token("/ws", {"Authorization": "Basic xyz"}) is None
    assert extract_token("/ws", {}) is None
