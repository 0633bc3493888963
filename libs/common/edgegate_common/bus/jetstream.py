"""JetStream helpers: declare streams and KV buckets idempotently.

Every replica of every service declares what it needs at start-up, so the
declarations must be safe to repeat and to race: creating what exists with
the same configuration is a no-op, and a stream whose configuration changed
is updated in place (the new release's declaration wins).
"""

from __future__ import annotations

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StreamConfig, StreamInfo
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from edgegate_common.logging import get_logger

log = get_logger(__name__)

# What a NATS or JetStream call raises while the server is away or slow: worth a retry.
TRANSIENT = (nats.errors.Error, TimeoutError, OSError)
# JetStream API error: "stream name already in use with a different configuration".
_STREAM_NAME_IN_USE = 10058


async def ensure_stream(js: JetStreamContext, config: StreamConfig) -> StreamInfo:
    """Create the stream, or update it to `config` if it exists differently."""
    try:
        return await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_NAME_IN_USE:
            raise
    log.info("updating stream configuration", stream=config.name)
    return await js.update_stream(config)


async def ensure_key_value(js: JetStreamContext, config: KeyValueConfig) -> KeyValue:
    """Create the KV bucket, or open it if it already exists.

    An existing bucket keeps its configuration (history, TTL): changing those
    is a migration, not something a starting replica should do on its own.
    """
    try:
        return await js.create_key_value(config)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_NAME_IN_USE:
            raise
    log.warning("kv bucket exists with another configuration; keeping it", bucket=config.bucket)
    return await js.key_value(config.bucket)
