"""The security service on NATS: the same calls as gRPC, one subject each.

Every replica joins the `security` queue group, so requests spread over the
replicas. Admin calls read the caller's token from the `Authorization`
header, as gRPC reads it from the `authorization` metadata.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.message import Message

from edgegate_common import subjects
from edgegate_common.bus import Bus, RequestContext
from edgegate_protos.security.v1 import security_pb2 as pb
from edgegate_security.api import SecurityApi

AUTHORIZATION = "Authorization"

# SecurityApi's methods, each taking its own request type.
PlainCall = Callable[[Any], Awaitable[Message]]
AdminCall = Callable[..., Awaitable[Message]]


async def serve(bus: Bus, api: SecurityApi) -> None:
    """Answer every security subject on `bus` until it closes."""
    queue = subjects.queue_group("security")
    plain: list[tuple[str, type[Message], PlainCall]] = [
        (subjects.SECURITY_ADMIT, pb.AdmitRequest, api.admit),
        (subjects.SECURITY_AUTHENTICATE, pb.AuthenticateRequest, api.authenticate),
        (subjects.SECURITY_AUTHORIZE, pb.AuthorizeRequest, api.authorize),
        (subjects.SECURITY_INSPECT, pb.InspectRequest, api.inspect),
        (subjects.SECURITY_JWKS, pb.GetJwksRequest, api.get_jwks),
    ]
    for subject, request_type, call in plain:
        await bus.serve(subject, request_type, _plain(call), queue=queue)
    admin: list[tuple[str, type[Message], AdminCall]] = [
        (subjects.SECURITY_ISSUE_TOKEN, pb.IssueTokenRequest, api.issue_token),
        (subjects.SECURITY_VERIFY_AUDIT, pb.VerifyAuditRequest, api.verify_audit),
        (subjects.SECURITY_RESTORE, pb.RestoreRequest, api.restore),
        (subjects.SECURITY_RECORD_ACTION, pb.RecordActionRequest, api.record_action),
        (subjects.SECURITY_LIST_AUDIT, pb.ListAuditRequest, api.list_audit),
    ]
    for subject, request_type, call in admin:
        await bus.serve(subject, request_type, _admin(call), queue=queue)


def _plain(call: PlainCall) -> Callable[[Message, RequestContext], Awaitable[Message]]:
    async def handle(request: Message, ctx: RequestContext) -> Message:
        return await call(request)

    return handle


def _admin(call: AdminCall) -> Callable[[Message, RequestContext], Awaitable[Message]]:
    async def handle(request: Message, ctx: RequestContext) -> Message:
        return await call(request, credential=ctx.headers.get(AUTHORIZATION, ""))

    return handle
