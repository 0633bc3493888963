"""Calling another service over the bus on a caller's behalf, with one meaning for silence.

Every call carries the caller's own token (`Authorization`), so the service
admits it as that caller. A service that does not answer (nobody subscribed,
or no reply in time) is UNAVAILABLE here, once, for every client; its own
refusals come back as the typed errors the bus carries.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import Message

from edgegate_common.bus.client import Bus
from edgegate_common.credentials import bearer_token
from edgegate_common.errors import DeadlineExceeded, NoResponders, Unavailable

Rep = TypeVar("Rep", bound=Message)


async def call_service(
    bus: Bus,
    subject: str,
    request: Message,
    reply_type: type[Rep],
    *,
    service: str,
    timeout_s: float,
    credential: str | None = None,
) -> Rep:
    """`bus.request`, as `credential` (None: no caller's token), naming `service` when it
    does not answer."""
    headers = None
    if credential is not None:
        headers = {"Authorization": f"Bearer {bearer_token(credential)}"}
    try:
        return await bus.request(subject, request, reply_type, timeout_s=timeout_s, headers=headers)
    except (NoResponders, DeadlineExceeded):
        raise Unavailable(f"the {service} is not answering; try again") from None
