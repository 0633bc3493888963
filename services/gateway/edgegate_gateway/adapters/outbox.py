"""The disk outbox: messages accepted while NATS is unreachable, kept until it returns.

One file per message (`OutboxEntry`, protobuf), written to a temporary name,
flushed to disk and renamed, so a crash leaves either the whole entry or
none. The folder and its files are readable by the gateway's user only: an
entry holds the caller's bearer token, needed to admit the message later.

Replay hands each entry to the taskstore under its idempotency key, and
deletes the file only after the taskstore has stored it. A replay cut off
between the two (a crash) runs again and finds the same task: every entry
becomes exactly one task. An entry the security service refuses on replay
(the token expired, the content is denied) is moved to `rejected/` with the
reason beside it, for an operator, never silently dropped.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from edgegate_common.errors import ResourceExhausted
from edgegate_protos.gateway.v1 import gateway_pb2 as pb


@dataclass(frozen=True, slots=True)
class Stored:
    path: Path
    entry: pb.OutboxEntry


class Outbox:
    def __init__(self, folder: Path, *, max_entries: int) -> None:
        self._folder = folder
        self._rejected = folder / "rejected"
        self._max_entries = max_entries
        self._rejected.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(folder, 0o700)
        # This process alone writes the folder: counted once here, then kept up to date.
        self._count = sum(1 for _ in folder.glob("*.entry"))

    def put(self, entry: pb.OutboxEntry) -> Path:
        """Keep `entry` on disk (durably) before the caller is told it was accepted."""
        if self._count >= self._max_entries:
            raise ResourceExhausted(
                f"the gateway's outbox holds {self._max_entries} messages waiting for NATS; "
                "try again later"
            )
        # Names sort in acceptance order; the task id keeps them unique.
        name = f"{time.time_ns():020d}-{entry.task_id}"
        temporary = self._folder / f".{name}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(entry.SerializeToString())
            file.flush()
            os.fsync(file.fileno())
        path = self._folder / f"{name}.entry"
        os.replace(temporary, path)
        _sync_folder(self._folder)
        self._count += 1
        return path

    def pending(self) -> list[Stored]:
        """What waits, oldest first. A file that does not parse goes to `rejected/`."""
        stored = []
        for path in sorted(self._folder.glob("*.entry")):
            entry = pb.OutboxEntry()
            try:
                entry.ParseFromString(path.read_bytes())
            except Exception as exc:
                self._set_aside(path, f"the entry does not parse: {exc!r}")
                continue
            stored.append(Stored(path, entry))
        self._count = len(stored)  # what the folder holds, whoever put it there
        return stored

    def count(self) -> int:
        return self._count

    def done(self, path: Path) -> None:
        path.unlink()
        _sync_folder(self._folder)
        self._count -= 1

    def reject(self, path: Path, reason: str) -> None:
        self._set_aside(path, reason)
        self._count -= 1

    def _set_aside(self, path: Path, reason: str) -> None:
        target = self._rejected / path.name
        os.replace(path, target)
        target.with_suffix(".reason").write_text(reason + "\n", encoding="utf-8")


def _sync_folder(folder: Path) -> None:
    """Make a rename or delete in `folder` survive a power cut."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
