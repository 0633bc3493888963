"""Files only this service's user may read: signing keys, the PII secrets."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from edgegate_common.errors import FailedPrecondition


def write_private(path: Path, data: bytes) -> None:
    """Write a file only this user can read, atomically (a crash never leaves half a key)."""
    # Named per writer: two processes writing the same file never share a partial one.
    partial = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, path)


def random_secret(path: Path, *, size: int) -> bytes:
    """The `size` random bytes kept in `path`, made (mode 0600) the first time.

    Kept, not regenerated: PII tokens and hashes made before a restart must
    still open and still match after it. Mount the same file (a Kubernetes
    Secret) into every replica so that they all agree.
    """
    if path.exists():
        data = path.read_bytes()
        if len(data) != size:
            raise FailedPrecondition(
                f"{path} holds {len(data)} bytes, not the {size} expected; restore it from "
                "backup (a new one would make every earlier PII token unreadable)"
            )
        return data
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = secrets.token_bytes(size)
    write_private(path, data)
    return data
