"""cache_service: the gRPC CacheService over Redis."""
