"""The NATS bus: protobuf request/reply with deadlines, tracing and typed errors; JetStream."""

from edgegate_common.bus.client import Bus, Handler, RequestContext
from edgegate_common.bus.jetstream import TRANSIENT, ensure_key_value, ensure_stream
from edgegate_common.bus.tls import client_tls_context

__all__ = [
    "TRANSIENT",
    "Bus",
    "Handler",
    "RequestContext",
    "client_tls_context",
    "ensure_key_value",
    "ensure_stream",
]
