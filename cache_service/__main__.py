"""``python -m cache_service``: parse config, run the server, exit cleanly.

Configuration and startup problems end the process with one line on stderr and exit status 2
(bad configuration) or 1 (cannot start), never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from cache_service.config import ConfigError, configure_logging, load_config
from cache_service.server import StartupError, serve

PROG = "cache_service"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        config = load_config(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(config)
    try:
        asyncio.run(serve(config))
    except StartupError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the handler is installed
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
