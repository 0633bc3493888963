"""`edgegate.security.v1.Security` in protobuf terms, for both transports.

Each method takes the request message (and, for admin calls, the caller's
credential from the `authorization` metadata or header) and returns the
response message. gRPC (`servicer.py`) and NATS (`adapters/bus.py`) only
move bytes to and from here, so they answer alike. A request that cannot be
read as the call it claims to be is INVALID_ARGUMENT with reason
`invalid_request`, and audited like every other refusal.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from datetime import UTC
from typing import TypeVar

from edgegate_common.credentials import bearer_token
from edgegate_common.errors import InvalidArgument, Unauthenticated
from edgegate_protos.common.v1 import envelope_pb2, principal_pb2
from edgegate_protos.security.v1 import security_pb2 as pb
from edgegate_security.audit.browse import AuditPage
from edgegate_security.core.inspection import Direction, Inspection, Piece, Verdict
from edgegate_security.core.principal import Principal
from edgegate_security.core.scopes import INFER_PREFIX
from edgegate_security.plane import SecurityPlane

DEFAULT_TTL_S = 3600  # IssueToken without ttl_s (0, proto3's "unset")
T = TypeVar("T")
V = TypeVar("V")

_VERDICTS = {
    Verdict.ALLOW: pb.VERDICT_ALLOW,
    Verdict.DENY: pb.VERDICT_DENY,
    Verdict.ALLOW_WITH_REDACTIONS: pb.VERDICT_ALLOW_WITH_REDACTIONS,
}
_DIRECTIONS = {pb.DIRECTION_INPUT: Direction.INPUT, pb.DIRECTION_OUTPUT: Direction.OUTPUT}
# Binary parts with these media types are text to inspect; other binaries only count for size.
_TEXT_MEDIA = ("text/", "application/json", "application/xml", "application/x-www-form-urlencoded")


class SecurityApi:
    def __init__(self, plane: SecurityPlane) -> None:
        self._plane = plane

    async def authenticate(self, request: pb.AuthenticateRequest) -> pb.AuthenticateResponse:
        principal = await self._plane.authenticate(request.token)
        return pb.AuthenticateResponse(principal=principal_to_proto(principal))

    async def authorize(self, request: pb.AuthorizeRequest) -> pb.AuthorizeResponse:
        principal = await self._read(principal_from_proto, request.principal)
        decision = await self._plane.authorize(
            principal, action=request.action, tenant=request.tenant
        )
        return pb.AuthorizeResponse(allowed=decision.allowed, reason=str(decision.reason or ""))

    async def inspect(self, request: pb.InspectRequest) -> pb.InspectResponse:
        principal = await self._read(principal_from_proto, request.principal)
        direction = await self._read(direction_from_proto, request.direction)
        result = await self._plane.inspect(
            pieces_of(request.parts), direction=direction, principal=principal
        )
        return inspect_response(result, request.parts)

    async def admit(self, request: pb.AdmitRequest) -> pb.AdmitResponse:
        envelope = request.envelope
        action = request.action or (
            f"{INFER_PREFIX}{envelope.route.model}" if envelope.route.model else ""
        )
        admission = await self._plane.admit(
            request.token,
            action=action,
            tenant=envelope.tenant,
            pieces=pieces_of(envelope.parts),
            request_id=envelope.id,
        )
        return pb.AdmitResponse(
            principal=principal_to_proto(admission.principal),
            inspection=inspect_response(admission.inspection, envelope.parts),
        )

    async def get_jwks(self, request: pb.GetJwksRequest) -> pb.GetJwksResponse:
        return pb.GetJwksResponse(jwks_json=json.dumps(self._plane.jwks(), separators=(",", ":")))

    async def issue_token(
        self, request: pb.IssueTokenRequest, *, credential: str
    ) -> pb.IssueTokenResponse:
        caller = await self._admin(credential)
        issued = await self._plane.issue_token(
            caller,
            tenant=request.tenant,
            subject=request.subject,
            scope_list=request.scopes,
            ttl_s=float(request.ttl_s or DEFAULT_TTL_S),
        )
        response = pb.IssueTokenResponse(token=issued.token, token_id=issued.principal.token_id)
        response.expires_at.FromDatetime(issued.principal.expires_at)
        return response

    async def verify_audit(
        self, request: pb.VerifyAuditRequest, *, credential: str
    ) -> pb.VerifyAuditResponse:
        caller = await self._admin(credential)
        result = await self._plane.verify_audit(caller)
        head = result.head
        return pb.VerifyAuditResponse(
            intact=result.intact,
            records_checked=result.records_checked,
            first_broken_sequence=result.first_broken_seq,
            first_broken_stream_sequence=result.first_broken_stream_seq,
            problem=result.problem,
            kind=str(result.kind or ""),
            head_sequence=head.seq if head else 0,
            head_hash=head.hash if head else "",
        )

    async def restore(self, request: pb.RestoreRequest, *, credential: str) -> pb.RestoreResponse:
        caller = await self._admin(credential)
        restored = await self._plane.restore(caller, request.text)
        return pb.RestoreResponse(text=restored.text, restored=restored.count)

    async def record_action(
        self, request: pb.RecordActionRequest, *, credential: str
    ) -> pb.RecordActionResponse:
        caller = await self._admin(credential)
        await self._plane.record_action(
            caller,
            action=request.action,
            target=request.target,
            outcome=request.outcome,
            details=dict(request.details),
        )
        return pb.RecordActionResponse()

    async def list_audit(
        self, request: pb.ListAuditRequest, *, credential: str
    ) -> pb.ListAuditResponse:
        caller = await self._admin(credential)
        page = await self._plane.list_audit(
            caller,
            before_stream_seq=request.before_sequence,
            limit=request.limit,
            event=request.event,
        )
        return audit_page_to_proto(page)

    async def _admin(self, credential: str) -> Principal:
        """The caller of an admin call, from its `authorization` value; a refusal is audited."""
        try:
            token = bearer_token(credential)
        except Unauthenticated as exc:
            await self._plane.refuse(exc)
            raise
        return await self._plane.admin(token)

    async def _read(self, convert: Callable[[T], V], value: T) -> V:
        """`convert(value)`, auditing the InvalidArgument of a request that does not read."""
        try:
            return convert(value)
        except InvalidArgument as exc:
            await self._plane.refuse(exc)
            raise


@functools.lru_cache(maxsize=4096)
def principal_to_proto(principal: Principal) -> principal_pb2.Principal:
    """The message for `principal`; the same object for the same principal (do not mutate it).

    A client's every request carries the same token, so its principal repeats:
    kept, it is built once instead of once a request.
    """
    message = principal_pb2.Principal(
        tenant=principal.tenant,
        subject=principal.subject,
        scopes=sorted(principal.scopes),
        token_id=principal.token_id,
    )
    message.expires_at.FromDatetime(principal.expires_at)
    return message


def principal_from_proto(message: principal_pb2.Principal) -> Principal:
    """A principal another service passes along (it came from Authenticate or Admit)."""
    if not message.tenant or not message.subject:
        raise InvalidArgument(
            "the principal needs a tenant and a subject", details={"field": "principal"}
        )
    try:
        expires_at = message.expires_at.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(
            "the principal's expires_at is not a valid time", details={"field": "principal"}
        ) from None
    return Principal(
        tenant=message.tenant,
        subject=message.subject,
        scopes=frozenset(message.scopes),
        expires_at=expires_at,
        token_id=message.token_id,
    )


def audit_page_to_proto(page: AuditPage) -> pb.ListAuditResponse:
    response = pb.ListAuditResponse(next_before_sequence=page.next_before_stream_seq)
    for listed in page.records:
        record, entry = listed.record, listed.record.entry
        response.records.add(
            seq=record.seq,
            time=entry.time,
            event=entry.event,
            reason=entry.reason,
            tenant=entry.tenant,
            subject=entry.subject,
            token_id=entry.token_id,
            request_id=entry.request_id,
            details=dict(entry.details),
            hash=record.hash,
            prev=record.prev,
            stream_sequence=listed.stream_seq,
        )
    return response


def direction_from_proto(value: pb.Direction.ValueType) -> Direction:
    direction = _DIRECTIONS.get(value)
    if direction is None:
        raise InvalidArgument(
            "direction must be DIRECTION_INPUT or DIRECTION_OUTPUT",
            details={"field": "direction"},
        )
    return direction


def pieces_of(parts: Sequence[envelope_pb2.Part]) -> list[Piece]:
    """What inspection sees of each part: text to check, or only a size."""
    pieces: list[Piece] = []
    for part in parts:
        match part.WhichOneof("content"):
            case "text":
                pieces.append(Piece(size_bytes=len(part.text.encode()), text=part.text))
            case "binary" if part.binary.mime_type.lower().startswith(_TEXT_MEDIA):
                pieces.append(Piece(size_bytes=len(part.binary.data), data=part.binary.data))
            case "binary":
                pieces.append(Piece(size_bytes=len(part.binary.data)))
            case "tensor":
                pieces.append(Piece(size_bytes=len(part.tensor.raw_data)))
            case _:  # JSON (checked by size), or an empty part
                pieces.append(Piece(size_bytes=part.ByteSize()))
    return pieces


def inspect_response(result: Inspection, parts: Sequence[envelope_pb2.Part]) -> pb.InspectResponse:
    response = pb.InspectResponse(
        verdict=_VERDICTS[result.verdict],
        reason=str(result.reason or ""),
        detail=result.detail,
    )
    for r in result.redactions:
        response.findings.add(
            entity_type=r.entity, part_index=r.part_index, start=r.start, end=r.end, score=r.score
        )
    if result.verdict is Verdict.ALLOW_WITH_REDACTIONS:
        for part, text in zip(parts, result.texts, strict=True):
            out = response.parts.add()
            out.CopyFrom(part)
            if text is None:
                continue
            if part.WhichOneof("content") == "binary":
                out.binary.data = text.encode()
            else:
                out.text = text
    return response
