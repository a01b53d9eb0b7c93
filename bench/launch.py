"""Run a server module under a chosen runtime, to measure what a runtime choice buys it.

    python -m bench.launch [--uvloop] [--no-orjson] bridge ARGS...

``--uvloop`` installs uvloop's event loop policy before the module's ``asyncio.run``;
``--no-orjson`` makes ``import orjson`` fail so the module falls back to the stdlib ``json``.
The server itself is unchanged, so the comparison is of the runtime alone.
"""

from __future__ import annotations

import asyncio
import runpy
import sys


def main() -> None:
    """Apply the runtime flags, then run the module as ``__main__`` with the remaining args."""
    args = sys.argv[1:]
    while args and args[0].startswith("--"):
        flag = args.pop(0)
        if flag == "--uvloop":
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        elif flag == "--no-orjson":
            sys.modules["orjson"] = None  # type: ignore[assignment]
        else:
            raise SystemExit(f"bench.launch: unknown flag {flag}")
    if not args:
        raise SystemExit("bench.launch: which module? (e.g. bridge)")
    sys.argv = [args[0], *args[1:]]
    runpy.run_module(args[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
