"""A NATS reply says where its time went, so that the gateway's breaker judges service time."""

from __future__ import annotations

import pytest

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_protos.common.v1 import envelope_pb2 as env

pytestmark = pytest.mark.timeout(120)


async def test_a_reply_carries_its_queue_and_compute_seconds(inference_server, bus: Bus) -> None:  # type: ignore[no-untyped-def]
    envelope = env.Envelope(id="timed")
    envelope.parts.add(text="how long did this take")
    reply = await bus.request(
        subjects.inference_infer("toy_text", "1"), envelope, env.Reply, timeout_s=10
    )
    queue_s = float(reply.metadata[subjects.REPLY_QUEUE_S])
    compute_s = float(reply.metadata[subjects.REPLY_COMPUTE_S])
    assert 0 <= queue_s < 5
    assert 0 < compute_s < 5  # the model call (tokenise, run, pool) took some time
