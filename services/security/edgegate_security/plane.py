"""The security plane: every decision the service makes, each refusal audited.

The gRPC servicer and the NATS handlers are thin translations onto these
methods, so both transports decide exactly alike and neither can forget an
audit record. What gets a record (`audit.EventKind`):

- `authn_failure`: a token that does not verify, with the verifier's reason;
- `deny`: a refused authorisation, a malformed call, an inspection that denies;
- `redaction`: an inspection that masked PII, naming the entity types and
  counts (never the values);
- `admin`: a token issued, tokens restored, the audit chain verified, an
  action a person took in an admin tool (`record_action`: filed as the caller).

Reading the audit log (`list_audit`) leaves no record: a console page that
browses it would otherwise bury what it shows under its own reads.

Allowed calls without redactions leave no record: they are the hot path, and
the metrics count them.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from edgegate_common.errors import (
    EdgegateError,
    FailedPrecondition,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from edgegate_security.audit.browse import AuditPage, AuditQuery
from edgegate_security.audit.chain import EventKind, Verification
from edgegate_security.core import scopes
from edgegate_security.core.actions import Action
from edgegate_security.core.inspection import Direction, Inspection, Inspector, Piece, Verdict
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.principal import Principal
from edgegate_security.core.reasons import Reason
from edgegate_security.core.tokens import IssuedToken, TokenIssuer, TokenVerifier
from edgegate_security.records import identifier, issued_details, trace_id

_MAX_DETAIL_CHARS = 512
# How long RecordAction waits for its record to be stored before it says it was not.
_RECORD_ACTION_TIMEOUT_S = 5.0  # under the console client's own 10 s
# Inspecting a chat message takes microseconds: inline. Longer input can take
# up to seconds of PII analysis (see inspection.MAX_SCAN_CHARS): a thread.
_INLINE_INSPECT_BYTES = 8 * 1024
_REASONS = frozenset(r.value for r in Reason)


class AuditSink(Protocol):
    """Where records go: `audit.AuditLog` in the service."""

    def append(
        self,
        *,
        event: EventKind,
        reason: Reason,
        tenant: str = "",
        subject: str = "",
        token_id: str = "",
        request_id: str = "",
        details: Mapping[str, str] | None = None,
    ) -> Awaitable[None]: ...

    def flush(self, *, timeout_s: float | None = None) -> Awaitable[None]:
        """Return once everything appended so far is stored (DeadlineExceeded if not in time)."""
        ...


class Restorer(Protocol):
    """The PII engine, as `restore` uses it."""

    def restore_counted(self, text: str, *, tenant: str) -> tuple[str, int]: ...


class AuditVerifier(Protocol):
    def verify(self) -> Awaitable[Verification]: ...


class AuditBrowser(Protocol):
    def browse(self, query: AuditQuery) -> Awaitable[AuditPage]: ...


@dataclass(frozen=True, slots=True)
class Admission:
    """What `admit` hands back: who is calling, and what may be forwarded."""

    principal: Principal
    inspection: Inspection


@dataclass(frozen=True, slots=True)
class Restored:
    text: str
    count: int


class SecurityPlane:
    def __init__(
        self,
        *,
        verifier: TokenVerifier,
        inspector: Inspector,
        audit: AuditSink,
        issuer: TokenIssuer | None = None,
        ring: KeyRing | None = None,
        restorer: Restorer | None = None,
        audit_verifier: AuditVerifier | None = None,
        audit_browser: AuditBrowser | None = None,
        leeway_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`issuer` and `ring` are this service's own keys (absent: only an IdP
        issues tokens); `restorer` undoes PII tokens (absent: PII is off)."""
        self._verifier = verifier
        self._inspector = inspector
        self._audit = audit
        self._issuer = issuer
        self._ring = ring
        self._restorer = restorer
        self._audit_verifier = audit_verifier
        self._audit_browser = audit_browser
        self._leeway_s = leeway_s
        self._clock = clock

    def _expired(self, principal: Principal) -> bool:
        return principal.expires_at.timestamp() + self._leeway_s <= self._clock()

    # -- the hot path ---------------------------------------------------

    async def authenticate(self, token: str, *, request_id: str = "") -> Principal:
        """The principal `token` speaks for; if not, Unauthenticated (with its reason), audited."""
        try:
            return await self._verifier.verify(token)
        except (Unauthenticated, Unavailable) as exc:
            # Unavailable: the identity provider's keys could not be had (jwks_unavailable).
            await self._record_refusal(EventKind.AUTHN_FAILURE, exc, request_id=request_id)
            raise

    async def authorize(
        self, principal: Principal, *, action: str, tenant: str, request_id: str = ""
    ) -> scopes.Decision:
        """May `principal` do `action` on `tenant`'s data? A "no" is audited.

        A principal whose token has expired (beyond the leeway) may do nothing:
        Authorize takes principals other services pass along, possibly kept too long.
        """
        try:
            decision = scopes.authorize(principal, action=action, tenant=tenant)
            if decision.allowed and self._expired(principal):
                decision = scopes.Decision(allowed=False, reason=Reason.TOKEN_EXPIRED)
        except InvalidArgument as exc:
            await self._record_refusal(
                EventKind.DENY, exc, principal=principal, request_id=request_id
            )
            raise
        if not decision.allowed:
            await self._record(
                EventKind.DENY,
                decision.reason or Reason.SCOPE_MISSING,
                principal=principal,
                request_id=request_id,
                details={"action": action},
            )
        return decision

    async def inspect(
        self,
        pieces: Sequence[Piece],
        *,
        direction: Direction,
        principal: Principal,
        request_id: str = "",
    ) -> Inspection:
        """Inspect a message of `principal`'s tenant; denials and redactions are audited."""
        if sum(piece.size_bytes for piece in pieces) <= _INLINE_INSPECT_BYTES:
            result = self._inspector.inspect(pieces, direction=direction, tenant=principal.tenant)
        else:  # long text: on a worker thread, so the loop keeps answering everyone else
            result = await asyncio.to_thread(
                self._inspector.inspect, pieces, direction=direction, tenant=principal.tenant
            )
        if result.verdict is Verdict.DENY:
            await self._record(
                EventKind.DENY,
                result.reason or Reason.INVALID_REQUEST,
                principal=principal,
                request_id=request_id,
                details={"direction": str(direction), "detail": result.detail},
            )
        elif result.redactions:
            counts = Counter(r.entity for r in result.redactions)
            await self._record(
                EventKind.REDACTION,
                Reason.PII_REDACTED,
                principal=principal,
                request_id=request_id,
                details={
                    "direction": str(direction),
                    "entities": ",".join(f"{e}:{n}" for e, n in sorted(counts.items())),
                },
            )
        return result

    async def admit(
        self,
        token: str,
        *,
        action: str,
        tenant: str,
        pieces: Sequence[Piece],
        request_id: str = "",
    ) -> Admission:
        """Authenticate, authorise and inspect an incoming message in one call.

        `tenant` is the one the message claims (empty: the token's). A refused
        token is Unauthenticated and a refused authorisation PermissionDenied,
        each with its reason; an inspection that denies is a DENY verdict.
        """
        principal = await self.authenticate(token, request_id=request_id)
        await self._require(
            principal, action=action, tenant=tenant or principal.tenant, request_id=request_id
        )
        inspection = await self.inspect(
            pieces, direction=Direction.INPUT, principal=principal, request_id=request_id
        )
        return Admission(principal=principal, inspection=inspection)

    # -- keys and administration ---------------------------------------

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """This service's public keys (an empty set when only an IdP issues tokens)."""
        return self._ring.jwks() if self._ring is not None else {"keys": []}

    async def admin(self, token: str, *, request_id: str = "") -> Principal:
        """The caller of an admin call, once its token verified and carries `admin`."""
        principal = await self.authenticate(token, request_id=request_id)
        await self._require(
            principal, action=scopes.ADMIN, tenant=principal.tenant, request_id=request_id
        )
        return principal

    async def issue_token(
        self,
        caller: Principal,
        *,
        tenant: str,
        subject: str,
        scope_list: Iterable[str],
        ttl_s: float,
        request_id: str = "",
    ) -> IssuedToken:
        """A token signed with our key, for `caller`'s own tenant: no admin mints another's."""
        if self._issuer is None:
            raise FailedPrecondition("this service issues no tokens: an identity provider does")
        tenant = tenant or caller.tenant
        await self._require(caller, action=scopes.ADMIN, tenant=tenant, request_id=request_id)
        try:
            issued = self._issuer.issue(
                tenant=tenant, subject=subject, scopes=scope_list, ttl_s=ttl_s
            )
        except InvalidArgument as exc:
            await self._record_refusal(EventKind.DENY, exc, principal=caller, request_id=request_id)
            raise
        await self._record(
            EventKind.ADMIN,
            Reason.TOKEN_ISSUED,
            principal=caller,
            request_id=request_id,
            details=issued_details(issued, ttl_s=ttl_s),
        )
        return issued

    async def restore(self, caller: Principal, text: str, *, request_id: str = "") -> Restored:
        """`text` with `caller`'s tenant's PII tokens opened; other tenants' stay sealed."""
        if self._restorer is None:
            raise FailedPrecondition("PII masking is off in this service; nothing to restore")
        restored, count = self._restorer.restore_counted(text, tenant=caller.tenant)
        await self._record(
            EventKind.ADMIN,
            Reason.DETOKENIZED,
            principal=caller,
            request_id=request_id,
            details={"tokens": str(count)},
        )
        return Restored(text=restored, count=count)

    async def verify_audit(self, caller: Principal, *, request_id: str = "") -> Verification:
        if self._audit_verifier is None:
            raise FailedPrecondition("this service keeps no audit stream to verify")
        result = await self._audit_verifier.verify()
        await self._record(
            EventKind.ADMIN,
            Reason.AUDIT_VERIFIED,
            principal=caller,
            request_id=request_id,
            details={"intact": str(result.intact).lower(), "records": str(result.records_checked)},
        )
        return result

    async def record_action(
        self,
        caller: Principal,
        *,
        action: str,
        target: str,
        outcome: str,
        details: Mapping[str, str],
        request_id: str = "",
    ) -> None:
        """File what `caller` did in an admin tool, and return once it is stored.

        The record names the caller's verified token, never anything the
        request says about who acted. A report that does not read is refused
        (InvalidArgument naming the field) and filed as a refusal.
        """
        try:
            checked = Action.checked(action=action, target=target, outcome=outcome, details=details)
        except InvalidArgument as exc:
            await self._record_refusal(EventKind.DENY, exc, principal=caller, request_id=request_id)
            raise
        await self._record(
            EventKind.ADMIN,
            Reason.CONSOLE_ACTION,
            principal=caller,
            request_id=request_id,
            details=checked.record_details(),
        )
        await self._audit.flush(timeout_s=_RECORD_ACTION_TIMEOUT_S)

    async def list_audit(
        self,
        caller: Principal,
        *,
        before_stream_seq: int,
        limit: int,
        event: str,
        request_id: str = "",
    ) -> AuditPage:
        """A page of the caller's own tenant's audit records, newest first."""
        if self._audit_browser is None:
            raise FailedPrecondition("this service keeps no audit stream to browse")
        try:
            query = AuditQuery.checked(
                tenant=caller.tenant, before_stream_seq=before_stream_seq, limit=limit, event=event
            )
        except InvalidArgument as exc:
            await self._record_refusal(EventKind.DENY, exc, principal=caller, request_id=request_id)
            raise
        return await self._audit_browser.browse(query)

    async def refuse(self, exc: InvalidArgument | Unauthenticated, *, request_id: str = "") -> None:
        """File a request, or a credential, that could not be read (the transports call this)."""
        event = EventKind.AUTHN_FAILURE if isinstance(exc, Unauthenticated) else EventKind.DENY
        await self._record_refusal(event, exc, request_id=request_id)

    async def _require(
        self, principal: Principal, *, action: str, tenant: str, request_id: str
    ) -> None:
        """`authorize`, raising PermissionDenied (with the reason) when it says no."""
        decision = await self.authorize(
            principal, action=action, tenant=tenant, request_id=request_id
        )
        if not decision.allowed:
            raise scopes.denial(principal, action=action, decision=decision)

    # -- records --------------------------------------------------------

    async def _record_refusal(
        self,
        event: EventKind,
        exc: EdgegateError,
        *,
        principal: Principal | None = None,
        request_id: str,
    ) -> None:
        # The caller sees the reason the record is filed under (error details).
        raw = exc.details.setdefault("reason", Reason.INVALID_REQUEST.value)
        reason = Reason(raw) if raw in _REASONS else Reason.INVALID_REQUEST
        details = {"message": exc.message[:_MAX_DETAIL_CHARS]}
        await self._record(
            event, reason, principal=principal, request_id=request_id, details=details
        )

    async def _record(
        self,
        event: EventKind,
        reason: Reason,
        *,
        principal: Principal | None = None,
        request_id: str = "",
        details: Mapping[str, str] | None = None,
    ) -> None:
        fields: dict[str, Any] = {
            "event": event,
            "reason": reason,
            "request_id": identifier(request_id) or trace_id(),
            "details": {k: v[:_MAX_DETAIL_CHARS] for k, v in (details or {}).items()},
        }
        if principal is not None:
            fields |= {
                "tenant": identifier(principal.tenant),
                "subject": identifier(principal.subject),
                "token_id": identifier(principal.token_id),
            }
        try:
            await self._audit.append(**fields)
        except InvalidArgument:
            # The caller's words looked like a credential (a JWT in a kid, say):
            # the record is still filed, with nothing the caller chose in it.
            await self._audit.append(
                event=event,
                reason=reason,
                details={"withheld": "the request's own words could not be stored"},
            )
