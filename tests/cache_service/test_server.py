"""The server around the servicer: health, reflection, metrics endpoint, TLS and mTLS."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from cache_service.config import CacheConfig
from cache_service.interceptor import method_label
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from cache_service.server import CacheServer, StartupError
from tests.infra.cache_calls import rpc_error
from tests.factories import TickerFactory
from tests.infra.cache_service_runner import health_status, running_cache_service
from tests.infra.certs import make_tls_files
from devstack.ports import free_port

pytestmark = pytest.mark.cluster_too  # SPEC §9.4: the server (§3: health, reflection, metrics, TLS) on a cluster too

SPEC_METRICS = ("cache_grpc_requests_total", "cache_grpc_request_duration_seconds", "cache_redis_up",
                "cache_redis_reconnects_total", "cache_stream_subscribers", "cache_events_published_total")


@pytest.mark.parametrize("service", ["", "cache.v1.CacheService", "liveness"])
async def test_health_serving(channel, service) -> None:
    response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def request():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    async for response in stub.ServerReflectionInfo(request()):
        names = {s.name for s in response.list_services_response.service}
        break
    assert {"cache.v1.CacheService", "grpc.health.v1.Health"} <= names


async def test_metrics_endpoint_shows_spec_names(svc, stub) -> None:
    await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory()))
    await rpc_error(stub.GetTicker(pb.GetTickerRequest()))
    url = f"http://127.0.0.1:{svc.metrics_port}/metrics"
    text = (await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())).decode()
    for name in SPEC_METRICS:
        assert f"\n{name}" in text, name
    assert 'cache_grpc_requests_total{code="OK",method="PublishTicker"} 1.0' in text
    assert 'cache_grpc_requests_total{code="INVALID_ARGUMENT",method="GetTicker"} 1.0' in text
    assert 'cache_events_published_total{channel="tickers"} 1.0' in text
    assert "cache_redis_up 1.0" in text


def test_method_label_is_bounded() -> None:
    assert method_label("/cache.v1.CacheService/GetTicker") == "GetTicker"
    assert method_label("/grpc.health.v1.Health/Check") == "grpc.health.v1.Health/Check"


async def test_restart_on_the_same_port(svc, redis_url: str) -> None:
    await svc.stop()
    await svc.start()
    async with grpc.aio.insecure_channel(svc.target) as channel:
        result = await cache_pb2_grpc.CacheServiceStub(channel).PublishTicker(
            pb.PublishTickerRequest(ticker=TickerFactory()), timeout=10)
    assert result.seq


async def test_busy_ports_are_startup_errors(redis_url: str) -> None:
    async with running_cache_service(redis_url) as svc:
        taken_grpc = CacheServer(CacheConfig(redis_url=redis_url, host="127.0.0.1", port=svc.port, metrics_port=0))
        with pytest.raises(StartupError, match="cannot listen"):
            await taken_grpc.start()
        taken_metrics = CacheServer(CacheConfig(redis_url=redis_url, host="127.0.0.1", port=free_port(),
                                                metrics_port=svc.metrics_port))
        with pytest.raises(StartupError, match="metrics"):
            await taken_metrics.start()


async def test_starts_not_serving_when_redis_is_unreachable() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    async with running_cache_service(url, redis_timeout=0.5) as svc:
        async with grpc.aio.insecure_channel(svc.target) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
            error = await rpc_error(cache_pb2_grpc.CacheServiceStub(channel).ListBots(pb.ListBotsRequest()))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            liveness = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="liveness"), timeout=10)
            assert liveness.status == health_pb2.HealthCheckResponse.SERVING  # alive, just not ready


async def _publish(target: str, credentials: grpc.ChannelCredentials) -> str:
    async with grpc.aio.secure_channel(target, credentials) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        return (await stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory()), timeout=10)).seq


async def test_tls(redis_url: str, tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    async with running_cache_service(redis_url, tls_cert_file=str(files.server_cert),
                                     tls_key_file=str(files.server_key)) as svc:
        assert await _publish(svc.target, grpc.ssl_channel_credentials(files.ca.read_bytes()))
        async with grpc.aio.insecure_channel(svc.target) as plain:
            error = await rpc_error(cache_pb2_grpc.CacheServiceStub(plain).ListBots(pb.ListBotsRequest(), timeout=5))
            assert error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


async def test_mtls_requires_a_client_certificate(redis_url: str, tmp_path: Path) -> None:
    files = make_tls_files(tmp_path)
    async with running_cache_service(redis_url, tls_cert_file=str(files.server_cert),
                                     tls_key_file=str(files.server_key),
                                     tls_client_ca_file=str(files.ca)) as svc:
        with_cert = grpc.ssl_channel_credentials(files.ca.read_bytes(), files.client_key.read_bytes(),
                                                 files.client_cert.read_bytes())
        assert await _publish(svc.target, with_cert)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await _publish(svc.target, grpc.ssl_channel_credentials(files.ca.read_bytes()))
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@pytest.mark.parametrize("round_", range(3))
async def test_stop_right_after_start_does_not_hang(redis_url: str, round_: int) -> None:
    # regression: stopping while the first health probe was in flight used to hang
    async with running_cache_service(redis_url) as svc:
        assert svc.running
    assert not svc.running


@pytest.mark.parametrize("connect", [False, True])
async def test_stop_after_a_channel_was_closed_without_a_call(redis_url: str, connect: bool) -> None:
    # reported: stopping hung at teardown after a channel was opened and closed with no call
    async with running_cache_service(redis_url) as svc:
        channel = grpc.aio.insecure_channel(svc.target)
        if connect:
            await asyncio.wait_for(channel.channel_ready(), 10)
        await channel.close()
        await asyncio.wait_for(svc.stop(), 20)
        await svc.start()  # and the same port serves again
        assert await asyncio.to_thread(health_status, svc.target, 5.0) == health_pb2.HealthCheckResponse.SERVING
