"""gRPC `edgegate.security.v1.Security`: metadata in, `SecurityApi` does the rest.

Errors are edgegate errors raised by the plane; the shared interceptor turns
them into status codes with the reason in the status details.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from edgegate_common.rpc import authorization
from edgegate_protos.security.v1 import security_pb2 as pb
from edgegate_protos.security.v1 import security_pb2_grpc
from edgegate_security.api import SecurityApi

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
else:
    Context = grpc.aio.ServicerContext


class SecurityServicer(security_pb2_grpc.SecurityServicer):
    def __init__(self, api: SecurityApi) -> None:
        self._api = api

    async def Authenticate(
        self, request: pb.AuthenticateRequest, context: Context
    ) -> pb.AuthenticateResponse:
        return await self._api.authenticate(request)

    async def Authorize(
        self, request: pb.AuthorizeRequest, context: Context
    ) -> pb.AuthorizeResponse:
        return await self._api.authorize(request)

    async def Inspect(self, request: pb.InspectRequest, context: Context) -> pb.InspectResponse:
        return await self._api.inspect(request)

    async def Admit(self, request: pb.AdmitRequest, context: Context) -> pb.AdmitResponse:
        return await self._api.admit(request)

    async def GetJwks(self, request: pb.GetJwksRequest, context: Context) -> pb.GetJwksResponse:
        return await self._api.get_jwks(request)

    async def IssueToken(
        self, request: pb.IssueTokenRequest, context: Context
    ) -> pb.IssueTokenResponse:
        return await self._api.issue_token(request, credential=authorization(context))

    async def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: Context
    ) -> pb.VerifyAuditResponse:
        return await self._api.verify_audit(request, credential=authorization(context))

    async def Restore(self, request: pb.RestoreRequest, context: Context) -> pb.RestoreResponse:
        return await self._api.restore(request, credential=authorization(context))

    async def RecordAction(
        self, request: pb.RecordActionRequest, context: Context
    ) -> pb.RecordActionResponse:
        return await self._api.record_action(request, credential=authorization(context))

    async def ListAudit(
        self, request: pb.ListAuditRequest, context: Context
    ) -> pb.ListAuditResponse:
        return await self._api.list_audit(request, credential=authorization(context))
