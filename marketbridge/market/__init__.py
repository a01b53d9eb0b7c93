"""Market data logic shared by both services (docs/market_data.md): books, checksums, trades, candles.

Plain objects, no I/O: the cache service and the bridge drive them and map their errors to
gRPC status codes and WebSocket error codes. docs/market_data.md is the model they follow.
"""
