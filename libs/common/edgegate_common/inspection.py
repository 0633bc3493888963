"""What a security inspection lets through, read the same way by every service.

The security service answers an inspection with a verdict, not an error:
DENY (refuse, with the reason), ALLOW_WITH_REDACTIONS (forward its masked
parts instead of the ones sent) or ALLOW. The gateway and the taskstore both
act on it; this is the one reading of it.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgegate_common.errors import PermissionDenied
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.security.v1 import security_pb2 as spb


def passed(
    inspection: spb.InspectResponse, parts: Sequence[env.Part], *, refused: str
) -> list[env.Part]:
    """The parts to forward: the redacted ones, or `parts`; PERMISSION_DENIED when denied,
    its message starting with `refused` ("the message was refused", say)."""
    if inspection.verdict == spb.VERDICT_DENY:
        raise PermissionDenied(
            f"{refused}: {inspection.detail or inspection.reason}",
            details={"reason": inspection.reason},
        )
    if inspection.verdict == spb.VERDICT_ALLOW_WITH_REDACTIONS:
        return list(inspection.parts)
    return list(parts)
