"""``python -m cache_service`` as operators run it: bad config, start, SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import grpc
import pytest

from cache_service.__main__ import main
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from tests.factories import TickerFactory
from tests.infra.cache_service_runner import CacheServiceProcess


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cache_service", *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize(("args", "text"), [
    (["--port", "http"], "--port: expected an integer, got 'http'"),
    (["--port", "70000"], "not a port"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--redis-url", "http://localhost:6379"], "scheme must be"),
    (["--redis-url", "redis+sentinel://h:26379"], "names no master"),
    (["--stream-maxlen", "0"], "--stream-maxlen"),
    (["--tls-cert-file", "/nonexistent.pem", "--tls-key-file", "/nonexistent.key"], "cannot read"),
    (["--tls-cert-file", "/etc/hostname"], "together"),
    (["--log-level", "chatty"], "--log-level"),
    (["--user-metadata-from", "mtls", "--user-metadata-peers", "bridge"], "needs --tls-client-ca-file"),
])
def test_bad_config_is_one_line_and_exit_2(args, text) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cache_service: error:") and text in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_environment_is_reported_by_name(capsys) -> None:
    import os
    env = {**os.environ, "CACHE_METRICS_PORT": "lots"}
    result = run_cli(env=env)
    assert result.returncode == 2 and "CACHE_METRICS_PORT" in result.stderr


def test_main_in_process_reports_config_errors(capsys) -> None:
    assert main(["--redis-url", "mongodb://x"]) == 2
    assert "scheme must be" in capsys.readouterr().err


def test_busy_port_is_one_line_exit_1(redis_url: str) -> None:
    first = CacheServiceProcess(redis_url)
    first.start()
    try:
        first.wait_ready(60)
        result = run_cli("--redis-url", redis_url, "--host", "127.0.0.1", "--port", str(first.port),
                         "--metrics-port", "0")
        assert result.returncode == 1
        assert "cannot listen" in result.stderr and "Traceback" not in result.stderr
    finally:
        assert first.stop() == 0


def test_serves_then_stops_gracefully_on_sigterm(redis_url: str) -> None:
    proc = CacheServiceProcess(redis_url, extra_args=["--stream-maxlen", "1000", "--log-level", "debug"],
                               env={"CACHE_SHUTDOWN_GRACE": "5"})
    proc.start()
    try:
        proc.wait_ready(60)
        with grpc.insecure_channel(proc.target) as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            seq = stub.PublishTicker(pb.PublishTickerRequest(ticker=TickerFactory()), timeout=10).seq
            assert seq
            stream = stub.StreamTickers(pb.StreamTickersRequest(exchange="binance"), timeout=60)
            assert next(stream).WhichOneof("event") == "live"
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=10).read()
            assert b"cache_events_published_total" in metrics
            assert proc.stop() == 0
            with pytest.raises(grpc.RpcError) as info:
                next(stream)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.kill()
