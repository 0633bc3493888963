"""The JSON merge patches behind each SRE command, and the `kubectl patch` that does the same.

The commands change a ModelDeployment only through these patches; the
operator reads the result like any other edit. So each command has a plain
kubectl equivalent, which `--help` prints from these same functions: the two
cannot drift apart.

- promote / promote --full / abort / retry: the annotation `edgegate.io/command`,
  `{"action": ..., "id": ...}`. The operator acts once per id and writes the id
  to status.lastCommandId, which is how the CLI sees that it acted.
- pause / resume: spec.paused.
- set-version: spec.model version, uri and sha256 (a version without a digest
  removes the old version's, which would not match the new file).
- breaker open / close / auto: spec.breakers, one entry per version, written
  back whole (a merge patch replaces a list; it cannot edit one item).
"""

from __future__ import annotations

import json
import shlex
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

COMMAND_ANNOTATION = "edgegate.io/command"
Action: TypeAlias = Literal["promote", "promoteFull", "abort", "retry"]
BreakerMode: TypeAlias = Literal["open", "closed", "auto"]
Patch: TypeAlias = dict[str, Any]


def new_command_id() -> str:
    return uuid.uuid4().hex


def command(action: Action, command_id: str) -> Patch:
    value = json.dumps({"action": action, "id": command_id}, separators=(",", ":"))
    return {"metadata": {"annotations": {COMMAND_ANNOTATION: value}}}


def paused(flag: bool) -> Patch:
    return {"spec": {"paused": flag}}


def model_version(version: str, *, uri: str, sha256: str | None) -> Patch:
    """spec.model's version, uri and digest; None removes the digest (name stays as it is)."""
    return {"spec": {"model": {"version": version, "uri": uri, "sha256": sha256}}}


def breakers(current: Sequence[object], *, version: str, mode: BreakerMode) -> list[Any]:
    """spec.breakers with `version`'s entry replaced or added; `auto` removes it.

    Entries of other versions are kept as they are, in their order.
    """

    def is_mine(entry: object) -> bool:
        return isinstance(entry, Mapping) and str(entry.get("version")) == version

    others = [entry for entry in current if not is_mine(entry)]
    if mode == "auto":
        return others
    at = next((i for i, entry in enumerate(current) if is_mine(entry)), len(current))
    return [*others[:at], {"version": version, "mode": mode}, *others[at:]]


def breakers_patch(entries: list[Any], *, resource_version: str | None) -> Patch:
    """The whole list, guarded by resourceVersion: a concurrent edit makes it a 409, not a loss."""
    patch: Patch = {"spec": {"breakers": entries}}
    if resource_version:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch


def kubectl(patch: Patch, *, name: str = "NAME", namespace: str = "NAMESPACE") -> str:
    """The `kubectl patch` command line that sends the same merge patch."""
    body = shlex.quote(json.dumps(patch, separators=(",", ":")))
    return f"kubectl -n {namespace} patch md {name} --type merge -p {body}"
