"""Client channels (marketbridge/channel.py) against a real gRPC server, plain and mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from marketbridge.channel import open_channel
from marketbridge.service import METHOD_PREFIX, SERVICE_NAME
from tests.infra.certs import make_tls_files

SERVING = health_pb2.HealthCheckResponse.SERVING


@asynccontextmanager
async def health_server(credentials: grpc.ServerCredentials | None) -> AsyncIterator[str]:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = (server.add_secure_port("127.0.0.1:0", credentials) if credentials
            else server.add_insecure_port("127.0.0.1:0"))
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def check(channel: grpc.aio.Channel) -> int:
    async with channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        return response.status


async def test_no_files_give_a_plaintext_channel() -> None:
    async with health_server(None) as target:
        assert await check(open_channel(target, [])) == SERVING


async def test_ca_and_client_pair_give_a_mutual_tls_channel(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    credentials = grpc.ssl_server_credentials(
        [(files.server_key.read_bytes(), files.server_cert.read_bytes())],
        root_certificates=files.ca.read_bytes(), require_client_auth=True)
    async with health_server(credentials) as target:
        channel = open_channel(target, [], ca=files.ca.read_bytes(), cert=files.client_cert.read_bytes(),
                               key=files.client_key.read_bytes())
        assert await check(channel) == SERVING


def test_the_service_name_comes_from_the_api() -> None:
    assert SERVICE_NAME == "cache.v1.CacheService"
    assert METHOD_PREFIX == "/cache.v1.CacheService/"
