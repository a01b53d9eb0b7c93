"""The I/O side of ``--jwks-url``: fetch the JWK Set at start, every ``--jwks-refresh-s`` and
for an unknown ``kid``, into a :class:`bridge.jwks.JwksCache` (which decides what a document
means and when a fetch is allowed).

HTTP is the standard library's urllib (proxies from the environment, redirects, chunked
bodies), run in a worker thread; the caller waits at most ``--jwks-timeout-s``, and the
thread's every socket operation times out at the same bound. HTTPS verifies the server with
the system CAs, or with only ``--jwks-ca-file``'s (a private CA). One fetch runs at a time:
connections that arrive with the same new ``kid`` during a fetch wait for that fetch
(:class:`bridge.single_flight.SingleFlight`), so a rotation costs the key server one request.

A failure never empties the cache: the keys of the last good document stay in use, and
``/readyz`` (detail), ``bridge_jwks_fetch_ok`` and ``bridge_jwks_fetch_failures_total`` say
that the key server is failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from typing import IO
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from bridge.config import BridgeConfig, ConfigError
from bridge.jwks import (ERROR, FAILURE_REASONS, HTTP_STATUS, MAX_DOCUMENT_BYTES, TIMEOUT, TLS,
                         UNREACHABLE, Jwk, JwksCache, JwksDocument, JwksError, KeyChange, parse_jwks)
from bridge.metrics import JwksMetrics
from bridge.single_flight import SingleFlight

log = logging.getLogger("bridge.jwks")
START, PERIODIC, UNKNOWN_KID = "start", "periodic", "unknown_kid"   # the ``trigger`` label
ACCEPT = "application/jwk-set+json, application/json"
USER_AGENT = "marketbridge-bridge"


def client_ssl_context(ca_file: str | None) -> ssl.SSLContext:
    """System CAs, or only those of ``ca_file``; the hostname is checked either way."""
    try:
        return ssl.create_default_context(cafile=ca_file)
    except OSError as exc:   # missing file, or not PEM (ssl.SSLError is an OSError)
        raise ConfigError(f"--jwks-ca-file {ca_file}: {exc.strerror or exc}") from None


class NoDowngradeRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are followed, but never from https to http: the keys would then travel
    unauthenticated, and whoever answers the http request would choose them."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Message, newurl: str) -> urllib.request.Request | None:
        if urlsplit(req.full_url).scheme == "https" and urlsplit(newurl).scheme != "https":
            raise urllib.error.HTTPError(newurl, code, f"redirect to {newurl} refused: not https",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_error(cause: object) -> JwksError:
    """A transport failure as a fetch failure with its metric reason."""
    if isinstance(cause, ssl.SSLError | ssl.CertificateError):
        return JwksError(TLS, f"TLS: {cause}")
    if isinstance(cause, TimeoutError):
        return JwksError(TIMEOUT, f"timed out: {cause}")
    return JwksError(UNREACHABLE, str(cause) or type(cause).__name__)


class JwksClient:
    """One bridge's JWK Set: the cache, its fetches (one at a time), the periodic refresh.

    :class:`bridge.auth.Authenticator` reads keys with :meth:`key` and, for an unknown
    ``kid``, awaits :meth:`refetch_for`."""

    def __init__(self, config: BridgeConfig, registry: CollectorRegistry,
                 clock: Callable[[], float] = time.monotonic) -> None:
        assert config.jwks_url, "JwksClient needs --jwks-url"
        self.url = config.jwks_url
        self.timeout = config.jwks_timeout_s
        self.algorithms = config.algorithms
        self.cache = JwksCache(config.jwks_refresh_s)
        self.metrics = JwksMetrics(registry, FAILURE_REASONS)
        self.clock = clock
        self.flight: SingleFlight[None] = SingleFlight()
        self.opener = self._opener(config.jwks_ca_file)
        self._task: asyncio.Task[None] | None = None

    def _opener(self, ca_file: str | None) -> urllib.request.OpenerDirector:
        if urlsplit(self.url).scheme != "https":
            log.warning("--jwks-url %s is plain http: anyone on the path could substitute keys "
                        "(use https outside local development)", self.url)
            return urllib.request.build_opener(NoDowngradeRedirects())
        return urllib.request.build_opener(
            NoDowngradeRedirects(), urllib.request.HTTPSHandler(context=client_ssl_context(ca_file)))

    # ------------------------------------------------------------ what auth reads

    def key(self, kid: str) -> Jwk | None:
        return self.cache.key(kid)

    async def refetch_for(self, kid: str) -> bool:
        """A token names ``kid``, which the cache lacks: wait for one fetch (the one in flight,
        or a new one if the 10 s limit allows); whether the key is there now."""
        if not len(self.flight) and not self.cache.unknown_kid_fetch_allowed(self.clock()):
            self.metrics.unknown_kid_total.labels("rate_limited").inc()
            log.debug("jwks: kid %r unknown; no refetch (one per 10 s at most)", kid)
            return False
        self.metrics.unknown_kid_total.labels("refetched").inc()
        await self.fetch(UNKNOWN_KID)
        return self.cache.key(kid) is not None

    def not_ready_reason(self) -> str | None:
        return self.cache.not_ready_reason()

    def detail(self) -> str | None:
        return self.cache.detail(self.clock())

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """The first fetch (bounded by the timeout; a failure is logged, not fatal: the
        bridge is not ready until keys come), then the periodic refresh."""
        await self.fetch(START)
        self._task = asyncio.create_task(self._refresh_loop(), name="jwks-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):   # our own cancel
                await self._task

    async def _refresh_loop(self) -> None:
        """Fetch whenever the cache says one is due (every ``--jwks-refresh-s``; sooner while
        failing). A fetch for an unknown ``kid`` moves the next one back."""
        while True:
            delay = self.cache.next_fetch_at(self.clock()) - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            await self.fetch(PERIODIC)

    # ------------------------------------------------------------ one fetch

    async def fetch(self, trigger: str) -> None:
        """Fetch and apply the document, or join the fetch in flight."""
        await self.flight.run("jwks", lambda: self._fetch(trigger))

    async def _fetch(self, trigger: str) -> None:
        self.cache.started(self.clock(), unknown_kid=trigger == UNKNOWN_KID)
        try:
            document = parse_jwks(await self._download_bounded(), self.algorithms)
            self._report_skipped(document)
            was_failing = self.cache.failing_since
            change = self.cache.succeeded(document, self.clock())
        except JwksError as exc:
            self._failed(exc.reason, str(exc))
        except Exception as exc:   # a bug: logged with its traceback, counted, keys unchanged
            log.exception("jwks: fetching %s failed unexpectedly", self.url)
            self._failed(ERROR, f"{type(exc).__name__}: {exc}")
        else:
            self._succeeded(change, was_failing)
        finally:
            self.metrics.fetches_total.labels(trigger).inc()

    async def _download_bounded(self) -> bytes:
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._download), self.timeout)
        except TimeoutError:
            raise JwksError(TIMEOUT, f"no document within {self.timeout:g} s") from None

    def _download(self) -> bytes:
        """GET the document (in a worker thread); every failure is a :class:`JwksError`."""
        request = urllib.request.Request(self.url, headers={"Accept": ACCEPT, "User-Agent": USER_AGENT})
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return bytes(response.read(MAX_DOCUMENT_BYTES + 1))   # more: parse_jwks refuses it
        except urllib.error.HTTPError as exc:
            exc.close()
            raise JwksError(HTTP_STATUS, f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise fetch_error(exc.reason) from None
        except (OSError, http.client.HTTPException) as exc:
            raise fetch_error(exc) from None

    def _report_skipped(self, document: JwksDocument) -> None:
        for skipped in document.skipped:
            self.metrics.skipped_keys_total.labels(skipped.reason).inc()
            log.warning("jwks: key %s of %s not used (%s): %s",
                        repr(skipped.kid) if skipped.kid else "without kid", self.url,
                        skipped.reason, skipped)

    def _succeeded(self, change: KeyChange, was_failing: float | None) -> None:
        keys = len(self.cache.keys)
        self.metrics.keys.set(keys)
        self.metrics.last_success_timestamp_seconds.set(time.time())
        self.metrics.fetch_ok.set(1)
        if was_failing is not None:
            log.info("jwks: %s answers again after %.0f s of failures", self.url,
                     self.clock() - was_failing)
        if change.added or change.removed:
            log.info("jwks: %d keys from %s (added: %s; removed: %s)", keys, self.url,
                     ", ".join(change.added) or "none", ", ".join(change.removed) or "none")
        else:
            log.debug("jwks: %d keys from %s, unchanged", keys, self.url)

    def _failed(self, reason: str, message: str) -> None:
        self.cache.failed(message, self.clock())
        self.metrics.fetch_failures_total.labels(reason).inc()
        self.metrics.fetch_ok.set(0)
        log.warning("jwks: fetching %s failed (%s): %s; %s", self.url, reason, message,
                    f"keeping {len(self.cache.keys)} cached keys" if self.cache.keys
                    else "no keys: every token is refused until a fetch succeeds")
