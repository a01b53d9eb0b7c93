"""Scenario (e): what one gRPC stream message costs in Python, against tickers per message.

``PublishTickers`` and ``StreamTickers`` carry one ticker per stream message. This measures
grpc.aio's own per-message cost on both ends, with no application work at all: a real
grpc.aio server whose client-streaming method only counts messages, fed by a real client with
the same bytes packed 1, 10 and 100 tickers (about 150 bytes each) per message. The gap between
the rows is what batching several tickers per message would save the cache service and the
bridge on every ticker.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import psutil

from bench.workers import new_queue, start_process
from devstack.ports import free_port

TICKERS = 30_000
TICKER_BYTES = 150
PACKINGS = (1, 10, 100)
METHOD = "/bench.Sink/Count"


def sink_server(port: int, ready: Any) -> None:
    """Process entry point: a grpc.aio server that counts the messages of each stream."""

    async def count(requests: Any, _context: Any) -> bytes:
        seen = 0
        async for _ in requests:
            seen += 1
        return str(seen).encode()

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "bench.Sink", {"Count": grpc.stream_unary_rpc_method_handler(count)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.put(True)
        await server.wait_for_termination(timeout=300)

    asyncio.run(main())


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


def run(tickers: int = TICKERS) -> dict[str, Any]:
    """Stream ``tickers`` tickers at each packing; CPU per ticker on both ends, and the rate."""
    port = free_port()
    ready = new_queue()
    server = start_process(sink_server, port, ready)
    rows = []
    try:
        ready.get(timeout=30)
        server_proc = psutil.Process(server.pid)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stream = channel.stream_unary(METHOD)
            for per_message in PACKINGS:
                messages = max(1, tickers // per_message)
                body = b"x" * (TICKER_BYTES * per_message)
                server_cpu, client_cpu, wall = _cpu(server_proc), time.process_time(), time.time()
                stream(iter([body] * messages), timeout=120)
                wall = time.time() - wall
                count = messages * per_message
                rows.append(
                    {
                        "tickers_per_message": per_message,
                        "server_us_per_ticker": round(
                            (_cpu(server_proc) - server_cpu) / count * 1e6, 2
                        ),
                        "client_us_per_ticker": round(
                            (time.process_time() - client_cpu) / count * 1e6, 2
                        ),
                        "tickers_per_s": round(count / wall),
                    }
                )
    finally:
        server.terminate()
        server.join(timeout=10)
    return {"tickers": tickers, "ticker_bytes": TICKER_BYTES, "rows": rows}
