"""One-off studies, not part of ``python -m bench``: each answered a question once (what uvloop
and orjson buy, how fast the cache service ingests) and is kept so its figures in docs/ can be
reproduced. Run one with ``python -m bench.experiments.<name>``; it starts what it needs from
devstack/ like the benchmark does."""
