"""``python -m bridge``: parse configuration, serve until SIGTERM/SIGINT, drain, exit."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Sequence

from bridge.config import BridgeConfig, ConfigError, load_config
from bridge.app import BridgeApp
from bridge.open_files import connections_allowed


log = logging.getLogger("bridge")


async def serve_until_signalled(config: BridgeConfig) -> None:
    allowed = connections_allowed(config.max_connections)
    if allowed < config.max_connections:
        log.warning("the open-files limit (RLIMIT_NOFILE) holds %d connections, not the "
                    "--max-connections %d: beyond it accepts fail (EMFILE); raise the hard "
                    "limit (ulimit -Hn, LimitNOFILE=)", allowed, config.max_connections)
    app = BridgeApp(config)
    await app.start()
    # Everything made so far (modules, protobuf descriptors, the app) lives as long as the
    # process: frozen, full collections skip it. Unfrozen, each one walked it all and stalled
    # every connection for 17 ms at 10,000 ticks/s (docs/benchmarks.md, "Garbage collection").
    gc.freeze()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await app.drain()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad configuration prints one line and exits 2, never a traceback."""
    try:
        config = load_config(sys.argv[1:] if argv is None else argv)
        logging.basicConfig(level=config.log_level,
                            format="%(asctime)s %(levelname)s %(name)s %(message)s")
        asyncio.run(serve_until_signalled(config))
    except ConfigError as exc:
        print(f"bridge: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"bridge: error: cannot serve: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
