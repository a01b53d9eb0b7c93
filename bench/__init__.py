"""Load harness for marketbridge: fan-out, connection capacity, connect churn, unary requests.

``python -m bench`` starts its own local stack (redis-server, ``python -m cache_service``,
``python -m bridge``, and the pub/sub baseline) on free loopback ports, or aims at a deployed
bridge with ``--bridge-url`` / ``--grpc-target``. Results go to JSON plus a PNG plot.

The measuring logic (sequence checks, latency histograms, pacing, frame decoding) lives in
plain objects without I/O; the scenario modules wrap them in asyncio and processes.
"""
