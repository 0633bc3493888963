"""gRPC `edgegate.taskstore.v1.TaskStore`: the credential from metadata, the API does the rest.

Errors are edgegate errors raised below; the shared interceptor turns them
into status codes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc

from edgegate_common.rpc import authorization
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_protos.taskstore.v1 import taskstore_pb2_grpc
from edgegate_taskstore.api import TaskStoreApi

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext


class TaskStoreServicer(taskstore_pb2_grpc.TaskStoreServicer):
    def __init__(self, api: TaskStoreApi) -> None:
        self._api = api

    async def Submit(self, request: pb.SubmitRequest, context: Context) -> pb.Task:
        return await self._api.submit(request, credential=authorization(context))

    async def Get(self, request: pb.GetRequest, context: Context) -> pb.Task:
        return await self._api.get(request, credential=authorization(context))

    async def List(self, request: pb.ListRequest, context: Context) -> pb.ListResponse:
        return await self._api.list(request, credential=authorization(context))

    async def Watch(self, request: pb.WatchRequest, context: Context) -> AsyncIterator[pb.Task]:
        async for task in self._api.watch(request, credential=authorization(context)):
            yield task

    async def Cancel(self, request: pb.CancelRequest, context: Context) -> pb.Task:
        return await self._api.cancel(request, credential=authorization(context))

    async def Retry(self, request: pb.RetryRequest, context: Context) -> pb.Task:
        return await self._api.retry(request, credential=authorization(context))

    async def Answer(self, request: pb.AnswerRequest, context: Context) -> pb.Task:
        return await self._api.answer(request, credential=authorization(context))

    async def MergeState(self, request: pb.MergeStateRequest, context: Context) -> pb.SessionState:
        return await self._api.merge_state(request, credential=authorization(context))

    async def GetState(self, request: pb.GetStateRequest, context: Context) -> pb.SessionState:
        return await self._api.get_state(request, credential=authorization(context))
