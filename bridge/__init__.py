"""bridge: WebSocket JSON <-> gRPC CacheService."""
