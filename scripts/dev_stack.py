"""``make up``: the whole system on this machine, for a person to look at.

Starts, in order, and waits for each to be ready before the next:

1. Redis: a throw-away ``redis-server`` on 127.0.0.1 (no persistence), unless ``--redis-url``
   points at one that is already running;
2. the cache service (``python -m cache_service``), ready when gRPC health says SERVING;
3. the bridge (``python -m bridge``) with the development JWT secret (``--jwt-secret``, else
   the one kept in ``.dev-secret``, made on the first launch: devstack/secret.py), ready when
   ``GET /readyz`` answers 200;
4. the demo feed (``python -m scripts.demo_feed``), ready when the cache holds tickers.

Then it prints the live page's URL with a ready token for ``alice`` (and one for ``bob``) and a
WebSocket example. Every child's output is shown line by line behind its name. Ctrl-C or
SIGTERM stops everything in reverse order (SIGTERM, then SIGKILL after a grace period); the
children run in their own sessions, so the terminal's Ctrl-C reaches only this supervisor and
the order holds, and on Linux they are told to die with it should it be killed outright.

Every flag reads ``DEV_<FLAG>`` from the environment (``--port`` -> ``DEV_PORT``).
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cache_service.redis_url import RedisUrlError, parse_redis_url
from devstack import probes
from devstack.exits import describe_exit
from devstack.ports import free_port, port_is_free
from devstack.secret import persistent_secret
from devstack.tokens import user_token
from marketbridge.settings import ConfigError, RaisingParser, add_flags, convert, env_name, gather

ENV_PREFIX = "DEV_"
ROOT = Path(__file__).resolve().parent.parent
# Git- and docker-ignored; made 0600 on the first launch (devstack/secret.py).
SECRET_FILE = ROOT / ".dev-secret"
DEMO_USERS = ("alice", "bob")
TOKEN_LIFETIME_S = 24 * 3600
STOP_GRACE_S = 10.0
SUBSCRIBE_EXAMPLE = (
    '{"action":"subscribe","request_id":1,"params":{"channel":"tickers","exchange":"binance"}}'
)


class StackError(Exception):
    """Something the person must fix (a busy port, a missing binary); one line, no traceback."""


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class StackConfig:
    """Ports and knobs of the local stack, built once from flags and ``DEV_*`` variables."""

    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int = 50051
    metrics_port: int = 9101
    redis_port: int = 0
    redis_url: str | None = None
    rate: float = 50.0
    feed: bool = True
    # Empty: the one kept in ``secret_file`` (resolve_secret), so tokens outlive a restart.
    jwt_secret: str = field(default="", repr=False)
    secret_file: Path = SECRET_FILE
    secret_from_file: bool = False  # set by resolve_secret, for the banner
    log_level: str = "INFO"
    ready_timeout: float = 60.0

    def __post_init__(self) -> None:
        for name in ("port", "grpc_port", "metrics_port"):
            value = getattr(self, name)
            if not 0 < value < 65536:
                raise StackError(
                    f"--{name.replace('_', '-')} must be a TCP port (1..65535), got {value}"
                )
        if not 0 <= self.redis_port < 65536:
            raise StackError(
                f"--redis-port must be 0 (any free port) or a TCP port, got {self.redis_port}"
            )
        if self.rate <= 0 or self.ready_timeout <= 0:
            raise StackError("--rate and --ready-timeout must be > 0")
        if self.redis_url and not self.redis_url.startswith(
            ("redis://", "rediss://", "redis+sentinel://")
        ):
            raise StackError(
                f"--redis-url must start with redis://, rediss:// or redis+sentinel://, got {self.redis_url}"
            )
        if self.redis_url:
            try:
                parse_redis_url(self.redis_url)
            except RedisUrlError as exc:
                raise StackError(f"--redis-url: {exc}") from None

    @property
    def public_host(self) -> str:
        """The host to put in printed URLs (a wildcard bind is reached on the loopback)."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


FLAG_HELP: dict[str, str | None] = {
    "host": "bridge bind address",
    "port": "bridge HTTP/WebSocket port",
    "grpc_port": "cache service gRPC port",
    "metrics_port": "cache service metrics port",
    "redis_port": "port of the Redis started here (0: any free)",
    "redis_url": "use this running Redis instead of starting one",
    "rate": "demo feed ticks per second",
    "jwt_secret": "bridge HS256 secret (default: the one in --secret-file)",
    "secret_file": "where the development secret is kept (made on first use, mode 0600)",
    "log_level": None,
    "ready_timeout": "seconds each part may take to become ready",
}


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> StackConfig:
    """Flags win over ``DEV_<FLAG>`` variables, which win over the defaults; values are read
    as every marketbridge program reads them (marketbridge.settings)."""
    parser = RaisingParser(
        prog="python -m scripts.dev_stack",
        description="Run Redis, cache service, bridge and demo feed locally.",
    )
    add_flags(parser, FLAG_HELP, FLAG_HELP.get)
    parser.add_argument("--no-feed", action="store_true", help="do not start the demo feed")
    args = vars(parser.parse_args(list(argv)))
    types = {f.name: f.type for f in dataclasses.fields(StackConfig)}
    # An empty value (DEV_REDIS_URL=) means "not set": the default applies.
    values: dict[str, Any] = {name: convert(raw, types[name])
                              for name, raw in gather(args, FLAG_HELP, environ, ENV_PREFIX).items()
                              if raw.text != ""}
    values["log_level"] = str(values.get("log_level", StackConfig.log_level)).upper()
    values["secret_file"] = Path(values.get("secret_file", SECRET_FILE))
    no_feed = args["no_feed"] or environ.get(env_name(ENV_PREFIX, "no_feed"), "") not in ("", "0", "false")
    return StackConfig(feed=not no_feed, **values)


def resolve_secret(config: StackConfig) -> StackConfig:
    """``config`` with its JWT secret: the one given, else the one kept in its secret file
    (made on the first launch), so a tab reloaded after a restart still holds a valid token."""
    if config.jwt_secret:
        return config
    try:
        secret = persistent_secret(config.secret_file)
    except OSError as exc:
        raise StackError(f"cannot use the development secret: {exc.strerror or exc}"
                         + (f": {exc.filename}" if exc.filename else "")) from None
    return dataclasses.replace(config, jwt_secret=secret, secret_from_file=True)


def check_port_free(host: str, port: int, flag: str) -> None:
    """Fail before starting anything when a port is taken, naming the flag that moves it."""
    if not port_is_free(host, port):
        env_name = ENV_PREFIX + flag.removeprefix("--").replace("-", "_").upper()
        raise StackError(f"port {port} is in use: choose another with {flag} or {env_name}")


def dev_token(secret: str, user: str, now: float | None = None) -> str:
    """An HS256 token the bridge accepts: ``sub`` is the user, valid for 24 hours."""
    return user_token(secret, user, TOKEN_LIFETIME_S, now)


# ---------------------------------------------------------------------------- readiness probes
# The shared blocking probes (devstack/probes.py), run off the event loop.


async def redis_ready(url: str) -> bool:
    return await asyncio.to_thread(probes.redis_loaded, url)


async def grpc_serving(target: str) -> bool:
    return await asyncio.to_thread(probes.grpc_serving, target)


async def http_ok(url: str) -> bool:
    return await asyncio.to_thread(probes.http_ok, url)


async def has_tickers(target: str) -> bool:
    return await asyncio.to_thread(probes.has_tickers, target)


# ---------------------------------------------------------------------------- child processes

COLORS = {"redis": "31", "cache": "36", "bridge": "35", "feed": "33", "dev": "32"}


def _die_with_parent() -> None:
    """Linux: SIGTERM this child if the supervisor dies without cleaning up (e.g. SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Output:
    """Prefixed, optionally coloured log lines; one writer so lines never interleave mid-line."""

    def __init__(self, stream: TextIO = sys.stdout) -> None:
        self._stream = stream
        self._color = stream.isatty() and os.environ.get("NO_COLOR") is None
        self._width = max(len(name) for name in COLORS)

    def line(self, name: str, text: str) -> None:
        label = name.ljust(self._width)
        if self._color:
            label = f"\033[{COLORS.get(name, '0')}m{label}\033[0m"
        self._stream.write(f"{label} | {text}\n")
        self._stream.flush()


class Child:
    """One supervised process: started, its output relayed, probed until ready, stopped."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        ready: Callable[[], Awaitable[bool]],
        out: Output,
        secret_env: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        # Secrets go in the environment, not argv: other users can read a command line (ps),
        # and argparse takes a value that starts with "-" for an option.
        self.secret_env = dict(secret_env or {})
        self.ready = ready
        self.out = out
        self.proc: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.secret_env}
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.out.line(
            "dev", f"started {self.name} (pid {self.proc.pid}): {shlex.join(self._shown_argv())}"
        )
        self._pump = asyncio.create_task(self._relay())

    def _shown_argv(self) -> list[str]:
        """The command line, with the interpreter's path shortened."""
        return [os.path.basename(a) if a == sys.executable else a for a in self.argv]

    async def _relay(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.out.line(self.name, line.decode(errors="replace").rstrip())

    @property
    def exited(self) -> bool:
        return self.proc is None or self.proc.returncode is not None

    async def wait_ready(self, timeout: float, stop: asyncio.Event) -> None:
        """Probe until ready; raise StackError if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while not stop.is_set():
            if self.exited:
                await self._drain()
                raise StackError(
                    f"{self.name} {describe_exit(self.proc.returncode if self.proc else None)} "
                    "before it was ready (its output is above)"
                )
            if await self.ready():
                self.out.line("dev", f"{self.name} is ready")
                return
            if time.monotonic() > deadline:
                raise StackError(f"{self.name} was not ready after {timeout:.0f}s")
            await asyncio.sleep(0.2)

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM, then SIGKILL if it is still running after ``grace`` seconds."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout=grace)
            except TimeoutError:
                self.out.line("dev", f"{self.name} ignored SIGTERM for {grace:.0f}s: killing it")
                self.proc.kill()
                await self.proc.wait()
        await self._drain()
        self.out.line("dev", f"stopped {self.name} ({describe_exit(self.proc.returncode)})")

    async def _drain(self) -> None:
        if self._pump is not None:
            try:
                await asyncio.wait_for(self._pump, timeout=5)
            except TimeoutError:
                self._pump.cancel()


# ---------------------------------------------------------------------------- the stack


class Stack:
    """The four children in start order; stopping goes the other way."""

    def __init__(self, config: StackConfig, out: Output, workdir: str) -> None:
        self.config = config
        self.out = out
        self.workdir = workdir
        self.redis_url = config.redis_url or ""
        self.children: list[Child] = []

    def plan(self) -> list[Child]:
        """Build every child's command line (and pick the Redis port) without starting any."""
        c, py = self.config, sys.executable
        plan: list[Child] = []
        if not c.redis_url:
            server = shutil.which("redis-server")
            if server is None:
                raise StackError(
                    "redis-server not found: install it (apt-get install redis-server) "
                    "or use a running Redis with --redis-url redis://HOST:PORT"
                )
            port = c.redis_port or free_port()
            self.redis_url = f"redis://127.0.0.1:{port}/0"
            plan.append(
                Child(
                    "redis",
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        self.workdir,
                        "--loglevel",
                        "warning",
                    ],
                    lambda: redis_ready(self.redis_url),
                    self.out,
                )
            )
        plan.append(
            Child(
                "cache",
                [
                    py,
                    "-m",
                    "cache_service",
                    "--redis-url",
                    self.redis_url,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(c.grpc_port),
                    "--metrics-port",
                    str(c.metrics_port),
                    "--log-level",
                    c.log_level,
                ],
                lambda: grpc_serving(c.grpc_target),
                self.out,
            )
        )
        plan.append(
            Child(
                "bridge",
                [
                    py,
                    "-m",
                    "bridge",
                    "--grpc-target",
                    c.grpc_target,
                    "--host",
                    c.host,
                    "--port",
                    str(c.port),
                    "--shutdown-grace",
                    "3",
                    "--log-level",
                    c.log_level,
                ],
                lambda: http_ok(f"http://{c.public_host}:{c.port}/readyz"),
                self.out,
                secret_env={"BRIDGE_JWT_SECRET": c.jwt_secret},
            )
        )
        if c.feed:
            plan.append(
                Child(
                    "feed",
                    [
                        py,
                        "-m",
                        "scripts.demo_feed",
                        "--target",
                        c.grpc_target,
                        "--rate",
                        str(c.rate),
                        "--log-level",
                        c.log_level,
                    ],
                    lambda: has_tickers(c.grpc_target),
                    self.out,
                )
            )
        return plan

    def check_ports(self) -> None:
        c = self.config
        check_port_free("127.0.0.1", c.grpc_port, "--grpc-port")
        check_port_free("127.0.0.1", c.metrics_port, "--metrics-port")
        check_port_free(c.host, c.port, "--port")
        if not c.redis_url and c.redis_port:
            check_port_free("127.0.0.1", c.redis_port, "--redis-port")

    def check_redis(self) -> None:
        """A ``--redis-url`` Redis must answer before anything starts: else the cache service
        would retry it in silence and the stack would only say, a minute later, that the cache
        was not ready. Sentinel URLs are left to the cache service (it asks the Sentinels)."""
        url = self.config.redis_url
        if not url or url.startswith("redis+sentinel://"):
            return
        silence = probes.redis_silence(url)
        if silence is not None:
            raise StackError(f"Redis at {parse_redis_url(url).shown} not answering ({silence})")

    async def start(self, plan: Sequence[Child], stop: asyncio.Event) -> None:
        for child in plan:
            if stop.is_set():
                return
            self.children.append(child)
            await child.start()
            await child.wait_ready(self.config.ready_timeout, stop)

    async def stop(self) -> None:
        for child in reversed(self.children):
            await child.stop()

    async def first_exit(self) -> Child:
        """The first child to exit on its own (the stack is broken then)."""
        waits = {asyncio.create_task(child.wait()): child for child in self.children}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return waits[next(iter(done))]

    def banner(self) -> str:
        c = self.config
        base = f"http://{c.public_host}:{c.port}"
        ws = f"ws://{c.public_host}:{c.port}/ws"
        alice, bob = (dev_token(c.jwt_secret, user) for user in DEMO_USERS)
        return "\n".join(
            [
                "",
                "marketbridge is up",
                f"  live page    {base}/?token={alice}",
                f"  as bob       {base}/?token={bob}",
                f"  batched      {base}/?batch_ms=250&token={alice}",
                f"  websocket    python -m websockets '{ws}?token={alice}'",
                f"               (or: wscat -c '{ws}?token={alice}')",
                f"               then send {SUBSCRIBE_EXAMPLE}",
                f"  bridge       {base}/readyz  {base}/metrics",
                f"  cache gRPC   {c.grpc_target} (reflection on)  metrics http://127.0.0.1:{c.metrics_port}/metrics",
                f"  redis        {parse_redis_url(self.redis_url).shown}",
                f"  jwt secret   {c.jwt_secret} (HS256; tokens above are valid for 24 h)",
                *([f"               kept in {c.secret_file}: tokens outlive a restart; "
                   "delete it to revoke them"] if c.secret_from_file else []),
                "Ctrl-C stops everything.",
                "",
            ]
        )


async def run(config: StackConfig, out: Output) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    with tempfile.TemporaryDirectory(prefix="marketbridge-dev-") as workdir:
        stack = Stack(config, out, workdir)
        stack.check_ports()
        await asyncio.to_thread(stack.check_redis)
        plan = stack.plan()
        code = 0
        try:
            await stack.start(plan, stop)
            if not stop.is_set():
                print(stack.banner(), flush=True)
                code = await _supervise(stack, stop, out)
        except StackError as exc:
            out.line("dev", f"error: {exc}")
            code = 1
        finally:
            out.line("dev", "stopping")
            await stack.stop()
            out.line("dev", "all stopped")
    return code


async def _supervise(stack: Stack, stop: asyncio.Event, out: Output) -> int:
    """Wait for Ctrl-C/SIGTERM (exit 0) or for a child to die by itself (exit 1)."""
    stopped = asyncio.create_task(stop.wait())
    crashed = asyncio.create_task(stack.first_exit())
    done, _ = await asyncio.wait({stopped, crashed}, return_when=asyncio.FIRST_COMPLETED)
    if crashed in done:
        child = crashed.result()
        out.line(
            "dev",
            f"{child.name} {describe_exit(child.proc.returncode if child.proc else None)}: stopping the stack",
        )
        stopped.cancel()
        return 1
    crashed.cancel()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    out = Output()
    try:
        config = resolve_secret(parse_config(sys.argv[1:] if argv is None else argv, os.environ))
        return asyncio.run(run(config, out))
    except (StackError, ConfigError) as exc:
        print(f"dev_stack: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
