"""The console's JSON shapes, made from what the services keep (pure: no I/O).

The browser code reads exactly these shapes; console/static/README.md
(the contract) names every field.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from edgegate_gateway.core.quota import Quota
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

STATUSES = {
    tpb.TASK_STATUS_PENDING: "pending",
    tpb.TASK_STATUS_PROCESSING: "processing",
    tpb.TASK_STATUS_COMPLETED: "completed",
    tpb.TASK_STATUS_FAILED: "failed",
    tpb.TASK_STATUS_CANCELLED: "cancelled",
}
STATUS_BY_NAME = {name: value for value, name in STATUSES.items()}
PRIORITIES = {env.PRIORITY_HIGH: "high", env.PRIORITY_LOW: "low"}
TEXT_PREVIEW = 200


def iso(stamp: Timestamp) -> str | None:
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")


def question_of(task: tpb.Task) -> str:
    texts = [p.text for p in task.envelope.parts if p.WhichOneof("content") == "text"]
    return " ".join(texts)


def answer_of(task: tpb.Task) -> str:
    return " ".join(p.text for p in task.result.parts if p.WhichOneof("content") == "text")


def task_view(task: tpb.Task) -> dict[str, Any]:
    status = STATUSES.get(task.status, "unknown")
    return {
        "id": task.id,
        "user": task.user,
        "status": status,
        "model": task.model or task.envelope.route.model,
        "priority": PRIORITIES.get(task.priority, "normal"),
        "attempts": task.attempts,
        "retries": task.retries,
        "created_at": iso(task.created_at),
        "updated_at": iso(task.updated_at),
        "error": task.error.message if task.HasField("error") else "",
        "text": question_of(task)[:TEXT_PREVIEW],
        "can_retry": status == "failed",
        "can_cancel": status in ("pending", "processing"),
    }


def channel_name(channel: env.Channel.ValueType) -> str:
    name = env.Channel.Name(channel) if channel in env.Channel.values() else "CHANNEL_UNSPECIFIED"
    return name.removeprefix("CHANNEL_").lower().replace("unspecified", "unknown")


def escalation_view(task: tpb.Task) -> dict[str, Any]:
    answered = task.status == tpb.TASK_STATUS_COMPLETED
    return {
        "id": task.id,
        "user": task.user,
        "channel": channel_name(task.envelope.channel),
        "question": question_of(task),
        "asked_at": iso(task.created_at),
        "status": STATUSES.get(task.status, "unknown"),
        "answer": answer_of(task) if answered else "",
        "answered_at": iso(task.updated_at) if answered else None,
        "answered_by": task.result.metadata.get("answered_by", "") if answered else "",
    }


def tasks_by_state(tasks: list[tpb.Task]) -> dict[str, int]:
    counts = dict.fromkeys(STATUSES.values(), 0)
    for task in tasks:
        name = STATUSES.get(task.status)
        if name is not None:
            counts[name] += 1
    return counts


def quota_view(quota: Quota | None) -> dict[str, Any] | None:
    if quota is None:
        return None
    return {
        "rate_per_s": quota.tenant.rate_per_s,
        "burst": quota.tenant.burst,
        "per_key_rate_per_s": quota.per_key.rate_per_s if quota.per_key else None,
        "per_key_burst": quota.per_key.burst if quota.per_key else None,
    }


def rollout_commands(namespace: str, name: str, *, phase: str) -> list[dict[str, str]]:
    """The `kubectl edgegate` command of each action that fits the rollout's phase."""
    target = f"{shlex.quote(name)} -n {shlex.quote(namespace)}"
    base = "kubectl edgegate rollout"
    commands = [("Show the rollout", f"{base} status {target}")]
    if phase in ("Progressing", "Paused"):
        commands += [
            ("Skip this step", f"{base} promote {target}"),
            ("Promote fully", f"{base} promote {target} --full"),
            ("Abort: all traffic to stable", f"{base} abort {target}"),
        ]
        if phase == "Paused":
            commands.append(("Resume", f"{base} resume {target}"))
        else:
            commands.append(("Pause", f"{base} pause {target}"))
    if phase == "Aborted":
        commands.append(("Retry from step 0", f"{base} retry {target}"))
    return [{"action": action, "command": command} for action, command in commands]


def breaker_commands(namespace: str, name: str, version: str) -> dict[str, str]:
    target = f"{shlex.quote(name)} -n {shlex.quote(namespace)} --version {shlex.quote(version)}"
    return {
        mode: f"kubectl edgegate breaker {verb} {target}"
        for mode, verb in (("open", "open"), ("closed", "close"), ("auto", "auto"))
    }


def rollout_view(doc: Mapping[str, Any]) -> dict[str, Any]:
    """One `edgegate-rollouts` document (written by the operator) as the page shows it."""
    status = _mapping(doc.get("status"))
    spec = _mapping(doc.get("spec"))
    namespace, name = str(doc.get("namespace", "")), str(doc.get("name", ""))
    phase = str(status.get("phase") or "Pending")
    last = _mapping(status.get("lastAnalysis"))
    return {
        "namespace": namespace,
        "name": name,
        "model": str(doc.get("model", "")),
        "phase": phase,
        "stable_version": status.get("stableVersion"),
        "canary_version": status.get("canaryVersion"),
        "weight": int(status.get("weight") or 0),
        "step": int(status.get("step") or 0),
        "steps": [str(s) for s in spec.get("steps") or []],
        "paused": bool(spec.get("paused")),
        "analysis": _analysis(last) if last else None,
        "failed_checks": int(status.get("failedChecks") or 0),
        "thresholds": _mapping(spec.get("analysis")),
        "breakers": [
            {
                "version": str(b.get("version", "")),
                "state": str(b.get("state", "closed")),
                "mode": str(b.get("mode", "auto")),
                "reason": str(b.get("reason", "")),
            }
            for b in status.get("breakers") or []
            if isinstance(b, Mapping)
        ],
        "conditions": [dict(c) for c in status.get("conditions") or [] if isinstance(c, Mapping)],
        "abort_reason": str(status.get("abortReason") or ""),
        "message": str(status.get("message") or ""),
        "observed_at": doc.get("observedAt"),
        "commands": rollout_commands(namespace, name, phase=phase),
    }


def _analysis(last: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": last.get("at"),
        "verdict": last.get("verdict"),
        "requests": last.get("requests"),
        "error_rate": last.get("errorRate"),
        "p99_s": last.get("p99Seconds", last.get("p99S", last.get("p99"))),
        "agreement": last.get("agreement"),
        "message": last.get("message", ""),
    }


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
