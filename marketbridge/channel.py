"""The client side of the gRPC transport: one way to open a plain, TLS or mTLS channel.

The bridge and the demo feed both talk to the cache service, with the same three optional PEM
files (CA to trust, client certificate and key for mTLS). Building the credentials here keeps
the rule ("no CA and no certificate: plaintext") the same for every client.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc


def open_channel(target: str, options: Sequence[tuple[str, Any]], *, ca: bytes | None = None,
                 cert: bytes | None = None, key: bytes | None = None) -> grpc.aio.Channel:
    """Plaintext when neither ``ca`` nor ``cert`` is given, else TLS (mTLS with ``cert``/``key``)."""
    if ca is None and cert is None:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                               certificate_chain=cert)
    return grpc.aio.secure_channel(target, credentials, options=options)
