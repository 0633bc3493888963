"""The security service's admin calls, as the web console makes them on a person's behalf.

Each call carries the person's own token (`Authorization`), so the security
service decides as that person: an admin of one tenant records actions and
reads audit records of that tenant only, and whoever is not an admin is
refused there, once, for every client. A security service that does not
answer (nobody subscribed, or no reply in time) is UNAVAILABLE here; its own
refusals come back as the typed errors the bus carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from google.protobuf.message import Message

from edgegate_common import subjects
from edgegate_common.bus import Bus
from edgegate_common.bus.calls import call_service
from edgegate_protos.security.v1 import security_pb2 as spb

Rep = TypeVar("Rep", bound=Message)


class SecurityAdmin:
    def __init__(
        self, bus: Bus, *, timeout_s: float = 10.0, verify_timeout_s: float = 120.0
    ) -> None:
        """`timeout_s` covers a call whole: reading a page of audit records, or waiting
        for an action's record to be stored; `verify_timeout_s` the walk of the whole chain."""
        self._bus = bus
        self._timeout_s = timeout_s
        self._verify_timeout_s = verify_timeout_s

    async def record_action(
        self,
        *,
        credential: str,
        action: str,
        target: str,
        outcome: str = "ok",
        details: Mapping[str, str] | None = None,
    ) -> None:
        """File what the person did (`action` on `target`, e.g. "task.cancel" on a task id).

        Returns once the record is stored. Who did it is the credential's
        holder; InvalidArgument (details `field`) for an action that does not
        read, see `RecordActionRequest`.
        """
        request = spb.RecordActionRequest(
            action=action, target=target, outcome=outcome, details=dict(details or {})
        )
        await self._call(
            subjects.SECURITY_RECORD_ACTION,
            request,
            spb.RecordActionResponse,
            credential=credential,
        )

    async def list_audit(
        self, *, credential: str, before_sequence: int = 0, limit: int = 50, event: str = ""
    ) -> spb.ListAuditResponse:
        """A page of the person's tenant's audit records, newest first; pass its
        `next_before_sequence` back as `before_sequence` for the next (0: none left)."""
        request = spb.ListAuditRequest(before_sequence=before_sequence, limit=limit, event=event)
        return await self._call(
            subjects.SECURITY_LIST_AUDIT, request, spb.ListAuditResponse, credential=credential
        )

    async def verify_audit(self, *, credential: str) -> spb.VerifyAuditResponse:
        """Walk the whole audit chain; a damaged chain is an answer (`intact` false)."""
        return await self._call(
            subjects.SECURITY_VERIFY_AUDIT,
            spb.VerifyAuditRequest(),
            spb.VerifyAuditResponse,
            credential=credential,
            timeout_s=self._verify_timeout_s,
        )

    async def _call(
        self,
        subject: str,
        request: Message,
        reply_type: type[Rep],
        *,
        credential: str,
        timeout_s: float | None = None,
    ) -> Rep:
        # After a timeout an action may have been recorded all the same: a retry files it
        # twice, never not.
        return await call_service(
            self._bus,
            subject,
            request,
            reply_type,
            service="security service",
            timeout_s=timeout_s or self._timeout_s,
            credential=credential,
        )
