"""The bridge's gRPC channel over TLS and mTLS to a real cache service."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import BridgeConfig, ConfigError
from bridge.app import BridgeApp
from tests.bridge.client import client
from tests.infra.bridge_runner import running_bridge
from tests.infra.cache_service_runner import running_cache_service
from tests.infra.certs import make_tls_files
from tests.infra.tokens import TEST_SECRET, make_token


async def test_mtls_upstream(redis_url: str, tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    async with running_cache_service(redis_url, tls_cert_file=str(tls.server_cert),
                                     tls_key_file=str(tls.server_key),
                                     tls_client_ca_file=str(tls.ca)) as svc:
        async with (running_bridge(svc.target, grpc_tls_ca_file=str(tls.ca),
                                   grpc_tls_cert_file=str(tls.client_cert),
                                   grpc_tls_key_file=str(tls.client_key)) as b,
                    client(b.ws_url(make_token("alice"))) as c):
            res = await c.request("subscribe", {"channel": "bots"})
            assert res["success"], res
            assert (await c.request("list_bots"))["success"]
        async with (running_bridge(svc.target, grpc_tls_ca_file=str(tls.ca), grpc_deadline=2.0) as b,
                    client(b.ws_url(make_token("alice"))) as c):   # no client certificate
            reply = await c.request("list_bots")
            assert reply["error"]["code"] == "UNAVAILABLE"


async def test_missing_tls_file_is_a_config_error(tmp_path: Path) -> None:
    config = BridgeConfig(jwt_secret=TEST_SECRET, grpc_tls_ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(ConfigError, match="--grpc-tls-ca-file"):
        BridgeApp(config)

