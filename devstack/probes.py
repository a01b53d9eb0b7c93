"""Readiness probes of the local servers: each answers True or False within about a second and
never raises for a server that is not up yet (a refused connection is just "not ready").

They block; an asyncio launcher runs them with ``asyncio.to_thread``.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cache_service.health import describe_failure
from marketbridge.api.v1 import cache_pb2, cache_pb2_grpc

PROBE_TIMEOUT_S = 1.0


def _redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=PROBE_TIMEOUT_S,
                                socket_connect_timeout=PROBE_TIMEOUT_S)


def redis_loaded(url: str) -> bool:
    """Redis answers PING and has finished loading its data."""
    client = _redis_client(url)
    try:
        return bool(client.ping()) and client.info("persistence").get("loading") == 0
    except (OSError, redis.RedisError):
        return False
    finally:
        client.close()


def redis_silence(url: str) -> str | None:
    """Why Redis at ``url`` does not answer PING, or None when it does (a Redis still loading
    its data answers). Worded as the cache service words it (``Connection refused: ...``), so a
    launcher can say at once what the cache service would only log after its own retries."""
    client = _redis_client(url)
    try:
        client.ping()
    except redis.BusyLoadingError:
        return None
    except (OSError, redis.RedisError) as exc:
        return describe_failure(exc)
    finally:
        client.close()
    return None


def grpc_serving(target: str) -> bool:
    """The gRPC health service at ``target`` reports SERVING."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=PROBE_TIMEOUT_S)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def has_tickers(target: str) -> bool:
    """The cache service at ``target`` holds at least one ticker (a feed has published)."""
    with grpc.insecure_channel(target) as channel:
        try:
            reply = cache_pb2_grpc.CacheServiceStub(channel).ListTickers(
                cache_pb2.ListTickersRequest(), timeout=PROBE_TIMEOUT_S)
        except grpc.RpcError:
            return False
    return len(reply.tickers) > 0


def http_ok(url: str) -> bool:
    """GET ``url`` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT_S) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def tcp_listening(port: int, host: str = "127.0.0.1") -> bool:
    """Something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False
