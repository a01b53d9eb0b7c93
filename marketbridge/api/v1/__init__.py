"""cache.v1: generated messages (cache_pb2) and stubs (cache_pb2_grpc). Do not edit by hand."""
