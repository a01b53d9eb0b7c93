"""The end-to-end canary (SPEC §9.6): a tiny event written into a reserved stream every
``--canary-s``, so a subscriber can tell a quiet pipe from a stuck one.

Heartbeats (cache_service.changefeed) only say that *this* service's reader is alive; they come
from the service, not through Redis, so a write path that stopped, or a reader stuck behind a
healthy-looking connection, keeps them coming. A canary makes the whole trip: the service
XADDs it, Redis appends it (its seq is its time), a change-feed reader reads it back and the
bridge receives it as an ordinary stream event. A bridge that has received none for 3
intervals leaves its load balancer's rotation (/readyz 503).

Every replica writes its own canary (no election): each one proves its own write path, a
bridge reads through whichever replica its stream landed on, and N replicas writing one small
entry every few seconds costs Redis nothing. The stream is capped short (``CANARY_MAXLEN``):
only the newest entries matter.
"""

from __future__ import annotations

import logging
import os
import socket

from redis.exceptions import RedisError

from cache_service.redis_url import RedisClient
from cache_service.slots import tagged
from marketbridge.api.v1 import cache_pb2

log = logging.getLogger(__name__)

CANARY_STREAM = tagged("canary", "stream")   # reserved: written by the service only
CANARY_CHANNEL = "canary"                  # its change-feed metrics label
CANARY_MAXLEN = 1000


def writer_name(port: int) -> str:
    """Which replica wrote a canary: host, process and port (diagnosis only, never a label)."""
    return f"{socket.gethostname()}:{os.getpid()}:{port}"


class CanaryWriter:
    """One step of the canary chore (run by cache_service.periodic.Periodic): one XADD.

    A failed write is logged once per outage, not with a traceback every interval: the
    subscribers notice the missing canaries, which is the point.
    """

    def __init__(self, redis: RedisClient, writer: str, interval_s: float) -> None:
        self.redis = redis
        self.data = cache_pb2.Canary(writer=writer, interval_s=interval_s).SerializeToString()
        self.failing = False

    async def step(self) -> None:
        try:
            await self.redis.xadd(CANARY_STREAM, {"d": self.data}, maxlen=CANARY_MAXLEN, approximate=True)
        except (RedisError, OSError) as exc:
            if not self.failing:
                log.warning("canary not written (%s); retrying every interval", exc)
            self.failing = True
            return
        if self.failing:
            log.info("canary written again")
        self.failing = False
