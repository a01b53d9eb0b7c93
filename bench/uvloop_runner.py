"""Run a module (``python -m bench.uvloop_runner bridge ARGS``) under uvloop's event loop.

Lets the harness measure what uvloop buys the bridge without the bridge depending on it:
installing uvloop's policy before the module's ``asyncio.run`` makes that run use uvloop.
"""

from __future__ import annotations

import asyncio
import runpy
import sys

import uvloop


def main() -> None:
    """Install uvloop's policy, then run ``sys.argv[1]`` as ``__main__`` with the rest as args."""
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
