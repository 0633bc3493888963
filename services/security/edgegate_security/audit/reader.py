"""Reading the audit stream: every record in order, and walking its chain.

An ordered consumer reads from a given stream sequence up to the last one
when the read starts; `verify_stream` feeds what it reads to a
`chain.ChainVerifier`. Nothing here writes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy, StreamState

from edgegate_common import subjects
from edgegate_common.bus import TRANSIENT
from edgegate_common.errors import NotFound, Unavailable
from edgegate_common.logging import get_logger
from edgegate_security.audit.chain import GENESIS, ChainVerifier, Checkpoint, Verification

log = get_logger(__name__)

# Failures that may pass: the writer retries them, readers report them as Unavailable.


async def stream_state(js: JetStreamContext, stream: str) -> StreamState:
    try:
        return (await js.stream_info(stream)).state
    except nats.js.errors.NotFoundError:
        raise NotFound(f"there is no audit stream {stream}") from None
    except TRANSIENT as exc:
        raise Unavailable(f"cannot read the audit stream {stream}: {exc!r}") from exc


async def read_stream(
    js: JetStreamContext,
    *,
    stream: str = subjects.STREAM_AUDIT,
    from_stream_seq: int = 1,
    up_to_seq: int | None = None,
    idle_timeout_s: float = 5.0,
) -> AsyncGenerator[tuple[int, bytes], None]:
    """Each stored message in order, as `(stream sequence, bytes)`: to verify or to export.

    Reads up to `up_to_seq` (default: the last sequence when the read starts),
    through an ordered consumer: ephemeral, no acks, and re-created by the
    client after a gap, so a long read survives a reconnect.
    """
    last = (await stream_state(js, stream)).last_seq if up_to_seq is None else up_to_seq
    if not last or from_stream_seq > last:
        return
    try:  # is anything left to read? (else the consumer would only wait)
        first = await js.get_msg(stream, seq=from_stream_seq, next=True, subject=">")
    except nats.js.errors.NotFoundError:
        return
    if first.seq is None or first.seq > last:
        return
    subscription = await js.subscribe(
        ">",
        stream=stream,
        ordered_consumer=True,
        config=ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=from_stream_seq
        ),
    )
    try:
        while True:
            try:
                msg = await subscription.next_msg(timeout=idle_timeout_s)
            except nats.errors.TimeoutError:
                raise Unavailable(
                    f"the audit stream {stream} stopped delivering for {idle_timeout_s:g}s"
                ) from None
            stream_seq = msg.metadata.sequence.stream
            if stream_seq > last:
                return
            yield stream_seq, msg.data
            if stream_seq == last or msg.metadata.num_pending == 0:
                return
    finally:
        try:
            await subscription.unsubscribe()
        except nats.errors.Error as exc:
            # Closed or reconnecting: the server drops the ordered consumer by itself.
            log.debug("audit reader unsubscribe failed", stream=stream, error=repr(exc))


async def verify_stream(
    js: JetStreamContext,
    *,
    stream: str = subjects.STREAM_AUDIT,
    after: Checkpoint | None = GENESIS,
    from_stream_seq: int = 1,
    idle_timeout_s: float = 5.0,
) -> Verification:
    """Walk the stream's chain and report the first broken link.

    `after`: GENESIS for the whole stream; a kept head together with the
    stream sequence after it (`from_stream_seq`) to check only what came
    since; None to trust the first record's `prev` (a stream whose oldest
    records a retention limit removed). NotFound or Unavailable when the
    stream cannot be read; a damaged stream is a result, never an exception.
    """
    last = (await stream_state(js, stream)).last_seq or 0
    verifier = ChainVerifier(after=after)
    messages = read_stream(
        js,
        stream=stream,
        from_stream_seq=from_stream_seq,
        up_to_seq=last,
        idle_timeout_s=idle_timeout_s,
    )
    async with contextlib.aclosing(messages):
        async for stream_seq, data in messages:
            verifier.feed(stream_seq, data)
    return verifier.finish(last_stream_seq=last)
