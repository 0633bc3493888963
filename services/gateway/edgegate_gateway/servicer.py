"""gRPC `edgegate.gateway.v1.Gateway`: the credential from metadata, the pipeline does the rest.

`Send` runs one envelope: inference when a replica serves its model, else
(or when `defer` asks for it) the taskstore, whose task id the reply
carries. `Converse` is still to come and answers UNIMPLEMENTED.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from edgegate_common.errors import Unimplemented
from edgegate_common.rpc import authorization
from edgegate_gateway.pipeline import Offline, Pipeline
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.gateway.v1 import gateway_pb2 as pb
from edgegate_protos.gateway.v1 import gateway_pb2_grpc

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def Send(self, request: pb.SendRequest, context: Context) -> pb.SendResponse:
        envelope = env.Envelope()
        envelope.CopyFrom(request.envelope)
        envelope.channel = env.CHANNEL_GRPC
        reply = await self._pipeline.handle(
            envelope, credential=authorization(context), defer=request.defer, offline=Offline.DEFER
        )
        return pb.SendResponse(reply=reply)

    async def Converse(
        self, request_iterator: AsyncIterator[pb.ConverseRequest], context: Context
    ) -> AsyncIterator[pb.ConverseResponse]:
        for response in _not_built_yet():
            yield response


def _not_built_yet() -> list[pb.ConverseResponse]:
    raise Unimplemented("Converse is not built yet; use Send")
