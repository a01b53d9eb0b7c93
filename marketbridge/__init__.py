"""What both services (and client authors in Python) share: the gRPC API's wire contract.

The bridge and the cache service are separate processes that agree on a few things beyond
the generated messages: metadata keys, seq ids, retry pacing, how settings are read. Each such
agreement lives here once, so the two sides cannot drift apart.
"""
