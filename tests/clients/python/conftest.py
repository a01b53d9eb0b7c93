"""The real stack for the Python client: the bridge suite's fixtures (Redis, cache service,
bridge, feed), and the JavaScript client's restartable stack (tests/clients/js/stack.py)."""

from tests.bridge.conftest import bridge, cache, feed

__all__ = ["bridge", "cache", "feed"]
