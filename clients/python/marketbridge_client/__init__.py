"""marketbridge_client: an asyncio client of the marketbridge WebSocket protocol.

Version 1.1.x speaks protocol 1 with the v1.1 features in :data:`FEATURES` (the package's
major.minor follow the protocol's). Quickstart: README.md next to this package.
"""

from marketbridge_client.book import ChecksumMismatch, OrderBook, checksum
from marketbridge_client.client import Client, Stream
from marketbridge_client.core import (FEATURES, PROTOCOL, Backoff, Liveness, Session, Subscription,
                                      Update, close_advice, parse_seq, updates_of)
from marketbridge_client.errors import (ClientError, ConnectionClosed, MessageTooBig, NotConnected,
                                        PolicyViolation, RequestError, RequestTimeout, TryAgainLater)

__version__ = "1.1.0"

__all__ = [
    "FEATURES", "PROTOCOL", "Backoff", "ChecksumMismatch", "Client", "ClientError", "ConnectionClosed",
    "Liveness", "MessageTooBig", "NotConnected", "OrderBook", "PolicyViolation", "RequestError",
    "RequestTimeout", "Session", "Stream", "Subscription", "TryAgainLater", "Update", "checksum",
    "close_advice", "parse_seq", "updates_of", "__version__",
]
