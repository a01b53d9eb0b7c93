"""The harness's settings: one typed object built from the command line, checked at start.

``--quick`` swaps in a small configuration (a few clients, a few hundred ticks per point, a
handful of connections) that runs end to end in well under a minute; everything else can
still be overridden by its flag.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from marketbridge.settings import ConfigError, Raw, RaisingParser, convert, flag_name, require_positive

__all__ = ["BenchConfig", "ConfigError", "build_parser", "parse", "validate"]

MODES = ("plain", "batch", "baseline", "baseline_batch")
SCENARIOS = ("fanout", "capacity", "churn", "unary", "grpc", "depth", "trades")
BOOK_DEPTHS = (10, 25, 100, 500)
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks"


@dataclass(frozen=True)
class BenchConfig:
    """Every knob of a run. Rates are ticks/s over all symbols; durations are seconds."""

    scenarios: tuple[str, ...] = SCENARIOS
    quick: bool = False
    out: Path = DEFAULT_OUT
    name: str = "results"
    bridge_url: str | None = None
    grpc_target: str | None = None
    jwt_secret: str | None = None
    bridge_loop: str = "asyncio"
    cache_loop: str = "asyncio"
    bridge_orjson: bool = True
    compression: str | None = None
    # (a) fan-out
    rates: tuple[float, ...] = (500, 1000, 2000, 5000, 10000, 20000)
    modes: tuple[str, ...] = ("plain", "batch", "baseline", "baseline_batch")
    clients: int = 100
    symbols: int = 50
    duration: float = 10.0
    batch_ms: int = 10
    workers: int = 4
    publisher_streams: int | None = None  # one per 10,000 ticks/s (bench/publisher.py)
    drain: float = 10.0
    probe_every: int = 10
    pick: int | None = None   # each client subscribes to this many random symbols (None: all)
    profile: bool = False
    pin_servers: bool = False   # servers on CPU 0, the load generator on the others (bench/pinning.py)
    # (b) connection capacity
    capacity_steps: tuple[int, ...] = (1000, 2500, 5000, 10000)
    # (c) connect churn
    churn_duration: float = 10.0
    churn_concurrency: int = 64
    # (d) unary get_ticker
    unary_duration: float = 10.0
    unary_connections: int = 64
    unary_depth: int = 4
    # (e) gRPC per-message cost
    grpc_tickers: int = 30_000
    # (f) depth: order books (deltas/s over all books) to --clients at --depth-levels
    depth_rates: tuple[float, ...] = (250, 500, 1000, 2000, 10000)
    depth_books: int = 50
    depth_levels: int = 25
    depth_probes: int = 4  # clients that keep and check a copy of every book (the rest count)
    # (g) trades: trades/s over --symbols to --clients (probes: --probe-every)
    trade_rates: tuple[float, ...] = (1000, 2000, 5000, 10000)

    @property
    def local(self) -> bool:
        """True when the harness starts its own stack (no target given)."""
        return self.bridge_url is None

    @property
    def profile_dir(self) -> Path | None:
        return self.out / "profiles" if self.profile else None

    @property
    def json_path(self) -> Path:
        return self.out / f"{self.name}.json"

    @property
    def png_path(self) -> Path:
        return self.out / f"{self.name}.png"

    @property
    def market_png_path(self) -> Path:
        """The depth and trades scenarios' plot."""
        return self.out / f"{self.name}-market.png"


QUICK = {
    "rates": (200, 400),
    "clients": 4,
    "symbols": 5,
    "duration": 1.5,
    "workers": 2,
    "publisher_streams": 1,
    "drain": 10.0,
    "probe_every": 2,
    "capacity_steps": (20, 40),
    "churn_duration": 2.0,
    "churn_concurrency": 4,
    "unary_duration": 2.0,
    "unary_connections": 4,
    "unary_depth": 2,
    "grpc_tickers": 2_000,
    "depth_rates": (200,),
    "depth_books": 4,
    "depth_probes": 2,
    "trade_rates": (400,),
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(v for v in text.replace(",", " ").split())


# The flags whose text is a number, or a list of them: converted after parsing by the rule every
# marketbridge program shares (``--clients: expected an integer, got 'abc'``), not by argparse.
NUMBERS: dict[str, type] = {
    "clients": int, "symbols": int, "duration": float, "batch_ms": int, "workers": int,
    "publisher_streams": int, "drain": float, "probe_every": int, "pick": int, "churn_duration": float,
    "churn_concurrency": int, "unary_duration": float, "unary_connections": int,
    "unary_depth": int, "grpc_tickers": int, "depth_books": int, "depth_levels": int,
    "depth_probes": int,
}
NUMBER_LISTS: dict[str, type] = {"rates": float, "capacity_steps": int, "depth_rates": float,
                                 "trade_rates": float}


def _numbers(name: str, value: str) -> object:
    """One flag's text as its number (or tuple of numbers, for a list flag)."""
    if name in NUMBER_LISTS:
        return tuple(convert(Raw(v, flag_name(name), from_env=False), NUMBER_LISTS[name])
                     for v in _words(value))
    return convert(Raw(value, flag_name(name), from_env=False), NUMBERS[name])


def build_parser() -> argparse.ArgumentParser:
    """``python -m bench [SCENARIO ...] [options]``; every option defaults to None (see QUICK)."""
    p = RaisingParser(
        prog="python -m bench",
        description=(
            "Load harness: (a) fanout sweep, (b) idle connection capacity, (c) connect churn, "
            "(d) unary get_ticker, (e) grpc per-message cost, (f) depth (order books with "
            "checksums), (g) trades. With no target it starts its own local stack."
        ),
    )
    p.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS)} (default: all)",
    )
    p.add_argument(
        "--quick", action="store_true", help="smallest end-to-end configuration (< 60 s)"
    )
    p.add_argument(
        "--out",
        type=Path,
        help=f"directory for the JSON and PNG (default {DEFAULT_OUT}; "
        "with --quick, marketbridge-bench in the temp directory)",
    )
    p.add_argument(
        "--name", help="file name stem of the outputs (default results, quick with --quick)"
    )
    p.add_argument("--bridge-url", help="ws://HOST:PORT/ws of a deployed bridge (no local stack)")
    p.add_argument(
        "--grpc-target", help="cache_service gRPC target of the deployed stack (publisher)"
    )
    p.add_argument("--jwt-secret", help="HS256 secret to mint client tokens (omit for --auth none)")
    p.add_argument(
        "--bridge-loop", choices=("asyncio", "uvloop"), help="event loop of the local bridge"
    )
    p.add_argument(
        "--cache-loop", choices=("asyncio", "uvloop"), help="event loop of the local cache service"
    )
    p.add_argument(
        "--bridge-no-orjson",
        dest="bridge_orjson",
        action="store_false",
        default=None,
        help="run the local bridge with orjson hidden (stdlib json), to measure what orjson buys",
    )
    p.add_argument(
        "--compression", choices=("none", "deflate"), help="clients offer permessage-deflate"
    )
    p.add_argument("--rates", help="fanout rates, ticks/s (e.g. 1000,2000,5000)")
    p.add_argument(
        "--modes", type=_words, help="fanout modes: plain, batch, baseline, baseline_batch"
    )
    for name, text in (
        ("clients", "fanout clients"),
        ("symbols", "symbols published and subscribed"),
        ("duration", "seconds of publishing per fanout point"),
        ("batch_ms", "batch_ms of the batch mode"),
        ("workers", "client processes"),
        ("publisher_streams", "parallel PublishTickers streams (default: one per 10,000 ticks/s)"),
        ("drain", "seconds to wait for stragglers after publishing"),
        ("probe_every", "one client in N checks every update; the rest count them"),
        ("pick", "fanout: each client subscribes to this many random symbols of --symbols "
                 "(distinct subscriptions; default: every client to all)"),
        ("churn_duration", "seconds of connect churn"),
        ("churn_concurrency", "concurrent connect loops"),
        ("unary_duration", "seconds of get_ticker load"),
        ("unary_connections", "connections sending get_ticker"),
        ("unary_depth", "requests in flight per connection"),
        ("grpc_tickers", "tickers streamed per packing in the grpc scenario"),
        ("depth_books", "order books published in the depth scenario"),
        ("depth_levels", "book depth the depth scenario's clients subscribe at (10, 25, 100, 500)"),
        ("depth_probes", "depth clients that keep a checked copy of every book (the rest count)"),
    ):
        p.add_argument(flag_name(name), dest=name, help=text)
    p.add_argument(
        "--pin-servers",
        action="store_true",
        default=None,
        help="bind Redis, the cache service and the bridge to CPU 0 and the load generator to the "
             "other CPUs (what one server core carries)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        default=None,
        help="py-spy the servers during each scenario (tables in the JSON, stacks in <out>/profiles)",
    )
    p.add_argument(
        "--capacity-steps", help="idle connection counts to reach (e.g. 1000,10000)"
    )
    p.add_argument("--depth-rates", help="depth scenario: book deltas/s over all books (e.g. 10000)")
    p.add_argument("--trade-rates", help="trades scenario: trades/s over all symbols (e.g. 10000)")
    return p


def parse(argv: Sequence[str] | None = None) -> BenchConfig:
    """Build and validate the config from ``argv``; raises ConfigError with one line."""
    args = vars(build_parser().parse_args(argv))
    values: dict[str, object] = dict(QUICK) if args.pop("quick") else {}
    values["quick"] = bool(values)
    values["name"] = "quick" if values["quick"] else "results"
    if values["quick"]:  # a smoke run: keep it out of docs/ unless --out says otherwise
        values["out"] = Path(tempfile.gettempdir()) / "marketbridge-bench"
    scenarios = tuple(args.pop("scenarios") or SCENARIOS)
    values["scenarios"] = scenarios
    compression = args.pop("compression")
    values["compression"] = None if compression in (None, "none") else compression
    values.update({k: _numbers(k, v) if k in NUMBERS or k in NUMBER_LISTS else v
                   for k, v in args.items() if v is not None})
    try:
        config = BenchConfig(**values)  # type: ignore[arg-type]
    except TypeError as exc:  # pragma: no cover - a programming error, not user input
        raise ConfigError(str(exc)) from None
    validate(config)
    return config


def validate(config: BenchConfig) -> None:
    """Reject settings that cannot run; each message names the flag."""
    unknown = [s for s in config.scenarios if s not in SCENARIOS]
    if unknown:
        raise ConfigError(f"unknown scenario {unknown[0]!r}: choose from {', '.join(SCENARIOS)}")
    bad_modes = [m for m in config.modes if m not in MODES]
    if bad_modes:
        raise ConfigError(f"--modes: unknown mode {bad_modes[0]!r} ({', '.join(MODES)})")
    # None (publisher_streams not given): the default applies
    require_positive(config, ("clients", "symbols", "workers", "publisher_streams", "pick",
                              "churn_concurrency", "probe_every", "unary_connections",
                              "unary_depth", "duration", "churn_duration", "unary_duration",
                              "depth_books", "depth_probes"),
                     lambda flag, _value: f"{flag} must be > 0")
    if not config.rates or min(config.rates) <= 0:
        raise ConfigError("--rates must list positive rates")
    for name in ("depth_rates", "trade_rates"):
        values = getattr(config, name)
        if not values or min(values) <= 0:
            raise ConfigError(f"{flag_name(name)} must list positive rates")
    if config.depth_levels not in BOOK_DEPTHS:
        raise ConfigError(f"--depth-levels must be one of {', '.join(map(str, BOOK_DEPTHS))}")
    if not config.capacity_steps or min(config.capacity_steps) <= 0:
        raise ConfigError("--capacity-steps must list positive counts")
    if not 1 <= config.batch_ms <= 1000:
        raise ConfigError("--batch-ms must be within 1..1000 (docs/protocol.md)")
    if config.bridge_url is not None:
        if not config.bridge_url.startswith(("ws://", "wss://")):
            raise ConfigError("--bridge-url must be a ws:// or wss:// URL")
        if config.grpc_target is None and any(s in config.scenarios for s in ("fanout", "unary", "depth", "trades")):
            raise ConfigError(
                "--bridge-url needs --grpc-target too (the publisher writes through gRPC)"
            )
