"""Parse ``--redis-url`` and open the matching ``redis.asyncio`` client.

Three forms: ``redis://`` and ``rediss://`` (TLS) go straight to redis-py;
``redis+sentinel://[user:pass@]h1:26379,h2:26379/MASTER[/DB]`` asks the Sentinels for the
current master on every (re)connect, so a failover needs no restart. The password in the
userinfo is the master's password; the Sentinels are assumed to need none unless
``sentinel_password`` is given as a query parameter.
"""

from __future__ import annotations

import re

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

SCHEMES = ("redis", "rediss", "redis+sentinel")
DEFAULT_SENTINEL_PORT = 26379


class RedisUrlError(ValueError):
    """The URL cannot be used; the message says why in one line."""


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: a plain URL, or Sentinels plus a master name."""

    url: str
    scheme: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def is_sentinel(self) -> bool:
        return self.scheme == "redis+sentinel"

    @property
    def shown(self) -> str:
        """The URL for logs and messages: where Redis is, with any password masked."""
        masked = re.sub(r"(//[^/@]*?:)[^/@]*@", r"\1***@", self.url)
        return re.sub(r"(?i)(password=)[^&]*", r"\1***", masked)


def _parse_host_port(item: str) -> tuple[str, int]:
    host, sep, port = item.rpartition(":")
    if not sep:
        return item, DEFAULT_SENTINEL_PORT
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RedisUrlError(f"bad sentinel address {item!r} (want host:port)")
    return host, int(port)


def _parse_sentinel(url: str) -> RedisTarget:
    rest = url[len("redis+sentinel://"):]
    rest, _, query = rest.partition("?")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    hosts, _, path = hostpart.partition("/")
    parts = [p for p in path.split("/") if p]
    if not hosts:
        raise RedisUrlError("redis+sentinel:// URL names no sentinel host")
    if not parts:
        raise RedisUrlError("redis+sentinel:// URL names no master (redis+sentinel://h:26379/MASTER[/DB])")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise RedisUrlError(f"bad redis+sentinel:// path {path!r} (want /MASTER[/DB])")
    username, password = None, None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    params = parse_qs(query)
    return RedisTarget(
        url=url,
        scheme="redis+sentinel",
        sentinels=tuple(_parse_host_port(h) for h in hosts.split(",") if h),
        master=unquote(parts[0]),
        db=int(parts[1]) if len(parts) == 2 else 0,
        username=username,
        password=password,
        sentinel_password=params.get("sentinel_password", [None])[0],
    )


def parse_redis_url(url: str) -> RedisTarget:
    """Check the scheme and shape of ``url``; raise RedisUrlError with a one-line reason."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise RedisUrlError(
            f"unsupported Redis URL {url!r}: scheme must be redis://, rediss:// or redis+sentinel://"
        )
    if scheme == "redis+sentinel":
        return _parse_sentinel(url)
    parts = urlsplit(url)
    try:
        _ = parts.port   # raises ValueError for a bad port
    except ValueError as exc:
        raise RedisUrlError(f"bad port in Redis URL {url!r}: {exc}") from None
    if not parts.hostname and not parts.path.startswith("/"):
        raise RedisUrlError(f"Redis URL {url!r} names no host")
    return RedisTarget(url=url, scheme=scheme)


def connect(target: RedisTarget, timeout: float) -> aioredis.Redis:
    """Open a client that fails fast: socket timeouts everywhere, no hidden retries.

    Retrying is the caller's decision (stream readers back off, unary calls report
    UNAVAILABLE), so redis-py's built-in retry is switched off.
    """
    common = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if not target.is_sentinel:
        return aioredis.Redis.from_url(target.url, **common)
    sentinel_kwargs = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs, **common)
    return sentinel.master_for(
        target.master, db=target.db, username=target.username, password=target.password
    )
