"""``python -m bench``: run the scenarios, write ``<out>/<name>.json`` and ``<name>.png``.

python -m bench                         # everything, on a local stack (about 10 minutes)
python -m bench --quick                 # the smallest end-to-end run (< 60 s)
python -m bench fanout --rates 10000 --modes batch
python -m bench depth trades                    # order books (checksums) and trades: sweeps up to 10,000/s
python -m bench depth --depth-rates 2000,5000,10000
python -m bench --bridge-url ws://HOST/ws --grpc-target HOST:50051 --jwt-secret S
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from bench import capacity, churn, depth, fanout, grpc_batching, plot, report, targets, trades, unary
from bench.config import BenchConfig, ConfigError, parse
from bench.pinning import pin_servers
from bench.stack import Endpoints, LocalStack, StackError, StackOptions
from bridge.open_files import raise_open_files

CONNECTIONS_HEADROOM = 2_000   # the local bridge's --max-connections above the largest capacity step
FD_WANTED = 1 << 20   # the capacity scenario's 50,000 sockets and more, in the bridge and the harness


def raise_fd_limit() -> int:
    """Lift the open-files limit of the harness, which its servers and workers inherit
    (bridge.open_files: up to the hard limit, beyond it where privileged); the soft limit now."""
    return raise_open_files(FD_WANTED)


def remote_endpoints(config: BenchConfig) -> Endpoints:
    """Endpoints of a deployed stack: no processes to sample, no baseline."""
    assert config.bridge_url is not None
    parts = urlsplit(config.bridge_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return Endpoints(
        bridge_ws=config.bridge_url,
        bridge_http=f"{scheme}://{parts.netloc}",
        grpc_target=config.grpc_target or "",
        jwt_secret=config.jwt_secret,
    )


def fanout_points(config: BenchConfig, endpoints: Endpoints) -> list[fanout.FanoutSettings]:
    modes = [m for m in config.modes if not fanout.is_baseline(m) or endpoints.baseline_ws]
    return [fanout.FanoutSettings.of(config, mode, rate) for rate in config.rates for mode in modes]


def depth_points(config: BenchConfig) -> list[depth.DepthSettings]:
    return [
        depth.DepthSettings(
            rate=rate,
            books=config.depth_books,
            clients=config.clients,
            depth=config.depth_levels,
            duration_s=config.duration,
            batch_ms=config.batch_ms,
            workers=config.workers,
            probes=config.depth_probes,
            publisher_streams=config.publisher_streams or 1,
            drain_s=config.drain,
            profile_dir=config.profile_dir,
        )
        for rate in config.depth_rates
    ]


def _attempt(document: dict[str, Any], label: str, step: Callable[[], Any]) -> Any:
    """Run one measurement; a failure is recorded in the document and the run goes on."""
    try:
        return step()
    except Exception as exc:  # noqa: BLE001 - one bad point must not lose the others
        message = f"{label}: {type(exc).__name__}: {exc}"
        print(f"bench: {message}", file=sys.stderr)
        document["errors"].append(message)
        return None


def run_scenarios(config: BenchConfig, endpoints: Endpoints, document: dict[str, Any]) -> None:
    """Run every requested scenario, saving the JSON after each result."""
    if "fanout" in config.scenarios:
        for settings in fanout_points(config, endpoints):
            point = _attempt(
                document,
                f"fanout {settings.mode} {settings.rate:g}/s",
                lambda s=settings: fanout.run_point(s, endpoints),
            )  # type: ignore[misc]
            if point:
                document["fanout"].append(point)
                print(report.fanout_line(point), flush=True)
            report.write(document, config.json_path)
    if "depth" in config.scenarios:
        for point_settings in depth_points(config):
            point = _attempt(
                document,
                f"depth {point_settings.rate:g}/s",
                lambda s=point_settings: depth.run_point(s, endpoints),
            )  # type: ignore[misc]
            if point:
                document["depth"].append(point)
                print(report.depth_line(point), flush=True)
            report.write(document, config.json_path)
    if "trades" in config.scenarios:
        for trade_settings in trades.points(config):
            point = _attempt(
                document,
                f"trades {trade_settings.rate:g}/s",
                lambda s=trade_settings: trades.run_point(s, endpoints),
            )  # type: ignore[misc]
            if point:
                document["trades"].append(point)
                print(report.fanout_line(point), flush=True)
            report.write(document, config.json_path)
    scenarios: list[tuple[str, str, Callable[[], Any], Callable[[Any], str]]] = [
        ("capacity", "capacity",
         lambda: capacity.run(endpoints, config.capacity_steps, config.workers, config.compression),
         lambda result: "\n".join(report.capacity_lines(result))),
        ("churn", "churn",
         lambda: churn.run(endpoints, config.churn_duration, config.churn_concurrency,
                           config.workers, config.profile_dir),
         report.churn_line),
        ("unary", "unary",
         lambda: unary.run(endpoints, config.unary_duration, config.unary_connections,
                           config.unary_depth, config.workers, config.profile_dir),
         report.unary_line),
        ("grpc", "grpc_batching",
         lambda: grpc_batching.run(config.grpc_tickers),
         lambda result: "\n".join(report.grpc_lines(result))),
    ]
    for name, key, step, describe in scenarios:
        if name in config.scenarios:
            result = _attempt(document, name, step)
            if result:
                document[key] = result
                print(describe(result), flush=True)
            report.write(document, config.json_path)


def stop_on_signals() -> None:
    """SIGTERM and SIGINT unwind the run (its finally blocks stop the local stack and workers),
    even when the harness was started in the background, where SIGINT is ignored by default."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    stop_on_signals()
    try:
        config = parse(argv)
    except ConfigError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    raise_fd_limit()
    document = report.new_document(config)
    started = time.monotonic()
    stack = (
        None
        if not config.local
        else LocalStack(
            StackOptions(
                bridge_loop=config.bridge_loop,
                cache_loop=config.cache_loop,
                orjson=config.bridge_orjson,
                batch_ms=config.batch_ms,
                max_connections=max(StackOptions.max_connections,
                                    max(config.capacity_steps) + CONNECTIONS_HEADROOM),
            )
        )
    )
    try:
        endpoints = stack.start() if stack else remote_endpoints(config)
        if config.pin_servers:
            if not endpoints.local:
                raise StackError("--pin-servers needs the local stack (its processes to pin)")
            document["pinning"] = pin_servers(endpoints.pids.values())
        run_scenarios(config, endpoints, document)
    except StackError as exc:
        print(f"bench: local stack failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        print(
            f"bench: interrupted ({exc}); results so far (if any) are in {config.json_path}",
            file=sys.stderr,
        )
        return 130
    finally:
        if stack:
            stack.close()
    document["elapsed_s"] = round(time.monotonic() - started, 1)
    document["targets"] = targets.evaluate(document)
    if config.quick:
        # Too small to judge any target (it proves the harness works end to end): say so plainly
        # rather than print verdicts that read like failures.
        print("bench: the quick run measures no targets (run `make bench` for them)", flush=True)
    else:
        print("\n".join(targets.lines(document["targets"])), flush=True)
    report.write(document, config.json_path)
    # The fan-out figure, and the depth and trades figure: <name>-market.png beside it, or
    # <name>.png itself when the run measured only depth and trades.
    written = [config.json_path]
    market = bool(document["depth"] or document["trades"])
    fanout_figure = bool(document["fanout"] or document["capacity"]) or not market
    if fanout_figure:
        plot.render(document, config.png_path)
        written.append(config.png_path)
    if market:
        market_png = config.market_png_path if fanout_figure else config.png_path
        plot.render_market(document, market_png)
        written.append(market_png)
    print(
        f"bench: wrote {', '.join(map(str, written))} in {document['elapsed_s']}s",
        flush=True,
    )
    return 1 if document["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
