"""Generated gRPC code for the CacheService API (see proto/). Regenerate with `make proto`."""
