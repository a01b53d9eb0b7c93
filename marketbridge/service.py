"""The gRPC service's name, taken from the generated descriptor rather than typed again.

The cache service registers health and reflection under it and labels metrics by the method
paths below it; the bridge asks health about it. Deriving it from ``cache.proto`` means a
rename of the package or service cannot leave one of them asking about a name nobody serves.
"""

from __future__ import annotations

from marketbridge.api.v1 import cache_pb2

SERVICE_NAME: str = cache_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name
METHOD_PREFIX: str = f"/{SERVICE_NAME}/"
