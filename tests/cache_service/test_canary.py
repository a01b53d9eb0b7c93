"""The canary (cache_service/canary.py, SPEC §9.6): written every --canary-s into the reserved
stream, and followed with StreamCanary like any change stream."""

from __future__ import annotations

import grpc
import pytest
from marketbridge.api.v1 import cache_pb2 as pb
from marketbridge.api.v1 import cache_pb2_grpc
from marketbridge.seq import seq_key
from tests.infra.cache_service_runner import running_cache_service

pytestmark = pytest.mark.cluster_too   # every redis_url test here runs on a Redis Cluster too (tests/conftest.py)


async def _until(call: grpc.aio.UnaryStreamCall, done: int) -> list[pb.CanaryEvent]:
    """The stream's events but heartbeats, up to ``done`` canaries after ``live``."""
    events: list[pb.CanaryEvent] = []
    async for event in call:
        if event.WhichOneof("event") != "heartbeat":
            events.append(event)
        kinds = [e.WhichOneof("event") for e in events]
        if "live" in kinds and kinds[kinds.index("live"):].count("canary") == done:
            return events
    raise AssertionError(f"the stream ended after {events}")


async def _first_canary(stub: cache_pb2_grpc.CacheServiceStub) -> None:
    """Wait until a canary exists (any stream's first canary event), then leave."""
    call = stub.StreamCanary(pb.StreamCanaryRequest(), timeout=20)
    try:
        async for event in call:
            if event.WhichOneof("event") == "canary":
                return
    finally:
        call.cancel()
    raise AssertionError("the canary stream ended before any canary")


async def test_canaries_are_written_every_interval_and_streamed_newest_first(redis_url: str) -> None:
    async with running_cache_service(redis_url, canary_s=0.2) as svc, \
            grpc.aio.insecure_channel(svc.target) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        await _first_canary(stub)   # the service's first write has landed (it races the start)
        call = stub.StreamCanary(pb.StreamCanaryRequest(), timeout=20)
        events = await _until(call, 2)
        call.cancel()
        kinds = [e.WhichOneof("event") for e in events]
        # the newest canary at once, then live, then the ones written since
        assert kinds[0] == "canary" and set(kinds) == {"canary", "live"}, kinds
        canaries = [e for e in events if e.WhichOneof("event") == "canary"]
        assert [seq_key(e.seq) for e in canaries] == sorted({seq_key(e.seq) for e in canaries})
        assert canaries[-1].canary.interval_s == 0.2 and f":{svc.port}" in canaries[-1].canary.writer

        resumed = stub.StreamCanary(pb.StreamCanaryRequest(resume_from=canaries[0].seq), timeout=20)
        replayed = await _until(resumed, 0)
        resumed.cancel()
        assert replayed[0].seq == canaries[1].seq   # resumed like any stream: from the one after
