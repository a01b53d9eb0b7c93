"""The chart's mTLS health probe (helm/marketbridge/files/grpc_health_probe.py), run as the
kubelet runs it (a subprocess, exit status) against the real cache service over Redis."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.infra.cache_service_runner import running_cache_service
from tests.infra.certs import make_pki
from tests.k8s.chart import CHART_DIR

pytestmark = pytest.mark.k8s

PROBE = CHART_DIR / "files" / "grpc_health_probe.py"
SERVER_NAME = "mb-marketbridge-cache-service-headless.trading.svc.cluster.local"


async def run_probe(*args: str) -> tuple[int, str]:
    """Exit status and output of one probe run (bounded like a kubelet probe)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(PROBE), "--timeout=5", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode()


async def test_plaintext_probe_passes_for_serving_and_fails_for_nothing_listening(redis_url: str) -> None:
    async with running_cache_service(redis_url) as svc:
        code, out = await run_probe(f"--addr={svc.target}", "--service=cache.v1.CacheService")
        assert code == 0, out
        assert "SERVING" in out
        code, out = await run_probe(f"--addr={svc.target}", "--service=no.such.Service")
        assert code == 1 and "NOT_FOUND" in out
        await svc.stop()
        code, out = await run_probe(f"--addr={svc.target}")
        assert code == 1 and "UNAVAILABLE" in out


async def test_mtls_probe_uses_the_pods_certificate(redis_url: str, tmp_path: Path) -> None:
    server, client = make_pki(tmp_path, [SERVER_NAME, f"*.{SERVER_NAME}"])
    async with running_cache_service(
        redis_url, tls_cert_file=str(server.cert), tls_key_file=str(server.key),
        tls_client_ca_file=str(server.ca),
    ) as svc:
        tls = [f"--tls-ca-file={server.ca}", f"--tls-cert-file={server.cert}",
               f"--tls-key-file={server.key}", f"--server-name={SERVER_NAME}"]
        # exactly the chart's readiness probe arguments
        code, out = await run_probe(f"--addr={svc.target}", "--service=cache.v1.CacheService", *tls)
        assert code == 0, out
        # the bridge's client certificate works too
        code, out = await run_probe(f"--addr={svc.target}", f"--tls-ca-file={client.ca}",
                                    f"--tls-cert-file={client.cert}", f"--tls-key-file={client.key}",
                                    f"--server-name={SERVER_NAME}")
        assert code == 0, out
        # no client certificate: refused (mTLS is required)
        code, out = await run_probe(f"--addr={svc.target}", f"--tls-ca-file={server.ca}",
                                    f"--server-name={SERVER_NAME}")
        assert code == 1, out
        # plaintext against a TLS port: refused
        code, out = await run_probe(f"--addr={svc.target}")
        assert code == 1, out
        # a name the certificate does not carry: refused
        code, out = await run_probe(f"--addr={svc.target}", *tls[:3], "--server-name=evil.example")
        assert code == 1, out


async def test_unreadable_tls_file_is_a_clear_failure(tmp_path: Path) -> None:
    code, out = await run_probe("--addr=127.0.0.1:1", f"--tls-ca-file={tmp_path / 'missing.crt'}")
    assert code == 1 and "cannot read TLS file" in out
