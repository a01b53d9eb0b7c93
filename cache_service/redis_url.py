"""Parse ``--redis-url`` and open the matching ``redis.asyncio`` client.

Four forms: ``redis://`` and ``rediss://`` (TLS) go straight to redis-py;
``redis+sentinel://[user:pass@]h1:26379,h2:26379/MASTER[/DB]`` asks the Sentinels for the
current master on every (re)connect, so a failover needs no restart. The password in the
userinfo is the master's password; the Sentinels are assumed to need none unless
``sentinel_password`` is given as a query parameter.

``redis+cluster://[user:pass@]h1:6379,h2:6379[/?tls=1]`` opens a Redis Cluster client
(``redis.asyncio.cluster.RedisCluster``): the listed nodes are only where it starts; it learns
every node and slot from them, and follows MOVED/ASK and failovers by itself. A cluster has
no databases, so a path other than ``/`` is refused; ``tls=1`` speaks TLS to every node.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

SCHEMES = ("redis", "rediss", "redis+sentinel", "redis+cluster")
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_CLUSTER_PORT = 6379

# What connect() returns: one client type per topology, the same commands on each.
RedisClient = aioredis.Redis | RedisCluster


class RedisUrlError(ValueError):
    """The URL cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: a plain URL, Sentinels plus a master name, or a cluster's seed nodes."""

    url: str
    scheme: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    nodes: tuple[tuple[str, int], ...] = ()   # redis+cluster: the seed nodes
    tls: bool = False                          # redis+cluster: TLS to every node

    @property
    def is_sentinel(self) -> bool:
        return self.scheme == "redis+sentinel"

    @property
    def is_cluster(self) -> bool:
        return self.scheme == "redis+cluster"

    @property
    def shown(self) -> str:
        """The URL for logs and messages: where Redis is, with any password masked."""
        masked = re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", self.url)
        return re.sub(r"(?i)(password=)[^&]*", r"\1***", masked)


def _parse_host_port(item: str, default_port: int, what: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep or (item.startswith("[") and item.endswith("]")):
        return item.strip("[]"), default_port
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError(f"bad {what} address {item!r} (want host:port)")
    return host, int(port)


@dataclass(frozen=True)
class _MultiHostUrl:
    """The shared shape of the two many-host schemes: ``scheme://[user:pass@]h:p,h:p/path?query``."""

    hosts: str
    path: str
    username: str | None
    password: str | None
    params: dict[str, list[str]]


def _split_multi_host(url: str, scheme: str) -> _MultiHostUrl:
    rest = url[len(scheme) + 3:]
    rest, _, query = rest.partition("?")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    hosts, _, path = hostpart.partition("/")
    username, password = None, None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    return _MultiHostUrl(hosts, path, username, password, parse_qs(query))


def _parse_sentinel(url: str) -> RedisTarget:
    parsed = _split_multi_host(url, "redis+sentinel")
    hosts, path, params = parsed.hosts, parsed.path, parsed.params
    username, password = parsed.username, parsed.password
    parts = [p for p in path.split("/") if p]
    if not hosts:
        raise RedisUrlError("redis+sentinel:// URL names no sentinel host")
    if not parts:
        raise RedisUrlError("redis+sentinel:// URL names no master (redis+sentinel://h:26379/MASTER[/DB])")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise RedisUrlError(f"bad redis+sentinel:// path {path!r} (want /MASTER[/DB])")
    return RedisTarget(
        url=url,
        scheme="redis+sentinel",
        sentinels=tuple(_parse_host_port(h, DEFAULT_SENTINEL_PORT, "sentinel") for h in hosts.split(",") if h),
        master=unquote(parts[0]),
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=params.get("sentinel_password", [None])[0],
    )


def _parse_cluster(url: str) -> RedisTarget:
    parsed = _split_multi_host(url, "redis+cluster")
    if not parsed.hosts:
        raise RedisUrlError("redis+cluster:// URL names no node (redis+cluster://h1:6379,h2:6379)")
    if parsed.path.strip("/"):
        raise RedisUrlError(f"bad redis+cluster:// path {parsed.path!r}: a cluster has no databases (want / or nothing)")
    unknown = sorted(set(parsed.params) - {"tls"})
    if unknown:
        raise RedisUrlError(f"unknown redis+cluster:// parameter {unknown[0]!r} (known: tls)")
    tls = parsed.params.get("tls", ["0"])[0]
    if tls not in ("0", "1"):
        raise RedisUrlError(f"bad redis+cluster:// tls={tls!r} (want 0 or 1)")
    return RedisTarget(
        url=url,
        scheme="redis+cluster",
        nodes=tuple(_parse_host_port(h, DEFAULT_CLUSTER_PORT, "cluster node") for h in parsed.hosts.split(",") if h),
        username=parsed.username,
        password=parsed.password,
        tls=tls == "1",
    )


def parse_redis_url(url: str) -> RedisTarget:
    """Check the scheme and shape of ``url``; raise RedisUrlError with a one-line reason."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise RedisUrlError(
            f"unsupported Redis URL {url!r}: scheme must be redis://, rediss://, redis+sentinel:// "
            "or redis+cluster://"
        )
    if scheme == "redis+sentinel":
        return _parse_sentinel(url)
    if scheme == "redis+cluster":
        return _parse_cluster(url)
    parts = urlsplit(url)
    try:
        _ = parts.port   # raises ValueError for a bad port
    except ValueError as exc:
        raise RedisUrlError(f"bad port in Redis URL {url!r}: {exc}") from None
    if not parts.hostname and not parts.path.startswith("/"):
        raise RedisUrlError(f"Redis URL {url!r} names no host")
    return RedisTarget(url=url, scheme=scheme)


class _Cluster(RedisCluster):
    """A cluster client whose "no seed node answers" is a ``ConnectionError``, as a single
    Redis that does not answer is.

    redis-py raises ``RedisClusterException("Redis Cluster cannot be connected ...")`` when it
    learns the slot map and no listed node answers (the whole cluster down, or not up yet when
    the service starts). That is no ``RedisError``, so every path that maps a Redis outage
    (UNAVAILABLE, NOT_SERVING, a reader's reconnect) missed it: the service did not start
    (its first health probe raised), a unary call ended UNKNOWN (SPEC §3), and a change feed
    reader logged a crash (tests/cache_service/test_health.py[cluster]). The original error is
    the new one's cause, so the OS's reason ("Connection refused") is still found.
    """

    async def initialize(self) -> RedisCluster:
        try:
            return await super().initialize()
        except RedisClusterException as exc:
            if isinstance(exc.__cause__, (RedisConnectionError, RedisTimeoutError, OSError)):
                raise RedisConnectionError(str(exc)) from exc
            raise


def connect(target: RedisTarget, timeout: float) -> RedisClient:
    """Open a client that fails fast: socket timeouts everywhere, no hidden retries.

    Retrying is the caller's decision (stream readers back off, unary calls report
    UNAVAILABLE), so redis-py's built-in retry is switched off. A cluster client still follows
    MOVED and ASK redirects (they are answers, not failures), and after a failed command it
    relearns the slot map on its next one, which is how it finds a promoted replica.
    """
    common = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if target.is_cluster:
        return _Cluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username, password=target.password, ssl=target.tls,
            socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=0,
        )
    if not target.is_sentinel:
        return aioredis.Redis.from_url(target.url, **common)
    sentinel_kwargs = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs, **common)
    return sentinel.master_for(
        target.master, db=target.db, username=target.username, password=target.password
    )
