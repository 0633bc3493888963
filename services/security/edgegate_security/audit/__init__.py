"""The tamper-evident audit log: hash-chained records on a JetStream stream.

`chain` holds the record format and verification (pure); `log` the JetStream
writer (`AuditLog`); `reader` reads the stream back (`read_stream`,
`verify_stream`: the stream's own last sequence exposes a cut tail); `browse`
pages through one tenant's records newest first (`AuditQuery`, `AuditPage`).
"""

from edgegate_security.audit.browse import AuditPage, AuditQuery, Listed, browse
from edgegate_security.audit.chain import (
    GENESIS,
    GENESIS_HASH,
    AuditEntry,
    AuditRecord,
    ChainVerifier,
    Checkpoint,
    EventKind,
    Problem,
    Verification,
    content_hash,
    parse_record,
    verify_chain,
)
from edgegate_security.audit.log import AuditLog, AuditStream
from edgegate_security.audit.reader import read_stream, verify_stream
from edgegate_security.encoding import canonical_json

__all__ = [
    "GENESIS",
    "GENESIS_HASH",
    "AuditEntry",
    "AuditLog",
    "AuditPage",
    "AuditQuery",
    "AuditRecord",
    "AuditStream",
    "ChainVerifier",
    "Checkpoint",
    "EventKind",
    "Listed",
    "Problem",
    "Verification",
    "browse",
    "canonical_json",
    "content_hash",
    "parse_record",
    "read_stream",
    "verify_chain",
    "verify_stream",
]
