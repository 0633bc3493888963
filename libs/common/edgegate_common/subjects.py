"""Every NATS subject, stream and KV bucket name edgegate uses, in one place.

Subjects are versioned (`edgegate.<service>.v1.<operation>`) so that a v2 can
run beside v1 during an upgrade. Nothing else in the code base spells a subject.
"""

from __future__ import annotations

import hashlib
import re
import uuid

PREFIX = "edgegate"

SERVICES = ("gateway", "inference", "taskstore", "security")


# Queue group shared by all replicas of one service: a request reaches one of them.
def queue_group(service: str) -> str:
    return f"{PREFIX}.{service}"


def status(service: str) -> str:
    """Each service answers `StatusRequest` here (any replica)."""
    return f"{PREFIX}.{service}.v1.status"


# inference
def inference_infer(model: str, version: str) -> str:
    """Replicas of one model version share a queue group on this subject."""
    return f"{PREFIX}.inference.v1.infer.{token(model)}.{token(version)}"


def inference_metrics(model: str, version: str) -> str:
    return f"{PREFIX}.inference.v1.metrics.{token(model)}.{token(version)}"


INFERENCE_METRICS_ALL = f"{PREFIX}.inference.v1.metrics.>"


def inference_availability(model: str, version: str) -> str:
    """A replica announces here when it starts or stops serving a model version."""
    return f"{PREFIX}.inference.v1.availability.{token(model)}.{token(version)}"


INFERENCE_AVAILABILITY_ALL = f"{PREFIX}.inference.v1.availability.>"
# A message here asks every inference replica to announce what it serves again.
INFERENCE_AVAILABILITY_QUERY = f"{PREFIX}.inference.v1.availability_query"

# security
SECURITY_ADMIT = f"{PREFIX}.security.v1.admit"
SECURITY_AUTHENTICATE = f"{PREFIX}.security.v1.authenticate"
SECURITY_AUTHORIZE = f"{PREFIX}.security.v1.authorize"
SECURITY_INSPECT = f"{PREFIX}.security.v1.inspect"
SECURITY_ISSUE_TOKEN = f"{PREFIX}.security.v1.issue_token"
SECURITY_JWKS = f"{PREFIX}.security.v1.jwks"
SECURITY_VERIFY_AUDIT = f"{PREFIX}.security.v1.verify_audit"
SECURITY_RESTORE = f"{PREFIX}.security.v1.restore"
SECURITY_RECORD_ACTION = f"{PREFIX}.security.v1.record_action"
SECURITY_LIST_AUDIT = f"{PREFIX}.security.v1.list_audit"
# Hash-chained audit records; only the security service publishes here (stream STREAM_AUDIT).
SECURITY_AUDIT = f"{PREFIX}.security.v1.audit"


# taskstore
def taskstore_events(tenant: str, user: str) -> str:
    """A finished task's record, once per finish (stream STREAM_TASK_EVENTS keeps them)."""
    return f"{PREFIX}.taskstore.v1.events.{ident(tenant)}.{ident(user)}"


TASKSTORE_EVENTS_ALL = f"{PREFIX}.taskstore.v1.events.>"
TASKSTORE_QUEUE_ALL = f"{PREFIX}.taskstore.v1.queue.>"
TASK_PRIORITIES = ("high", "normal", "low")  # the order workers take them in


def taskstore_queue(priority: str) -> str:
    """The work queue of one priority (stream STREAM_TASKS)."""
    return f"{PREFIX}.taskstore.v1.queue.{priority}"


def taskstore_dead(tenant: str, task_id: str) -> str:
    """A task past its attempts (stream STREAM_TASKS_DEAD), until Retry takes it back."""
    return f"{PREFIX}.taskstore.v1.dead.{ident(tenant)}.{ident(task_id)}"


TASKSTORE_DEAD_ALL = f"{PREFIX}.taskstore.v1.dead.>"
TASKSTORE_SUBMIT = f"{PREFIX}.taskstore.v1.submit"
TASKSTORE_GET = f"{PREFIX}.taskstore.v1.get"
TASKSTORE_LIST = f"{PREFIX}.taskstore.v1.list"
TASKSTORE_CANCEL = f"{PREFIX}.taskstore.v1.cancel"
TASKSTORE_RETRY = f"{PREFIX}.taskstore.v1.retry"
TASKSTORE_ANSWER = f"{PREFIX}.taskstore.v1.answer"
TASKSTORE_MERGE_STATE = f"{PREFIX}.taskstore.v1.merge_state"
TASKSTORE_GET_STATE = f"{PREFIX}.taskstore.v1.get_state"

# gateway
GATEWAY_BREAKER_EVENTS = f"{PREFIX}.gateway.v1.breaker"
# Each replica's per-tenant admitted/throttled counts (TrafficSnapshot), for the console.
GATEWAY_TRAFFIC = f"{PREFIX}.gateway.v1.traffic"


def gateway_agreement(model: str, version: str) -> str:
    """A gateway replica's shadow agreement counts for one (canary) model version."""
    return f"{PREFIX}.gateway.v1.agreement.{token(model)}.{token(version)}"


GATEWAY_AGREEMENT_ALL = f"{PREFIX}.gateway.v1.agreement.>"


def gateway_chat_later(platform: str) -> str:
    """A chat question kept until the assistant can answer it (stream STREAM_CHAT_LATER)."""
    return f"{PREFIX}.gateway.v1.chat_later.{token(platform)}"


GATEWAY_CHAT_LATER_ALL = f"{PREFIX}.gateway.v1.chat_later.>"

# Reply.metadata keys inference sets on an answer: the seconds it waited in the batcher's
# queue and spent in its model call, so that a caller's breaker judges service, not queueing.
REPLY_QUEUE_S = "inference.queue_s"
REPLY_COMPUTE_S = "inference.compute_s"

# JetStream streams and KV buckets
STREAM_TASKS = "EDGEGATE_TASKS"
STREAM_TASKS_DEAD = "EDGEGATE_TASKS_DEAD"
STREAM_TASK_EVENTS = "EDGEGATE_TASK_EVENTS"
STREAM_AUDIT = "EDGEGATE_AUDIT"
STREAM_CHAT_LATER = "EDGEGATE_CHAT_LATER"  # the gateway's questions for later
# What the operator observed (metric and agreement snapshots, breaker events), kept an hour.
STREAM_OBSERVATIONS = "EDGEGATE_OBSERVATIONS"
KV_TASKS = "edgegate-tasks"
KV_SESSIONS = "edgegate-sessions"
KV_ROUTES = "edgegate-routes"
KV_QUOTAS = "edgegate-quotas"
KV_BREAKERS = "edgegate-breakers"
# Each ModelDeployment's spec digest and status, mirrored by the operator (key namespace.name),
# so that the console and local tools see rollouts without Kubernetes API access.
KV_ROLLOUTS = "edgegate-rollouts"
KV_RATE_BUCKETS = "edgegate-rate-buckets"  # the gateway's token buckets, shared by replicas
KV_WEBHOOK_EVENTS = "edgegate-webhook-events"  # chat platform events the gateway claimed
KV_KNOWLEDGE = "edgegate-knowledge"  # passages people added to the assistant's knowledge

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def token(value: str) -> str:
    """Make one subject token from a free-form name (model, tenant, user).

    NATS tokens may not contain `.`, `*`, `>` or whitespace; those become `_`.
    An empty value is refused rather than producing an empty token.
    """
    if not value:
        raise ValueError("a subject token cannot be empty")
    return _UNSAFE.sub("_", value)


_PLAIN = re.compile(r"[A-Za-z0-9-]{1,64}")


def ident(value: str) -> str:
    """One subject token (or KV key part) for an identity: a tenant, a user, a task id.

    Unlike `token`, no two values share one, because a shared token would
    hand one tenant's (or user's) data to another: plain names (letters,
    digits, `-`, up to 64) stay as they are, anything else becomes `_` and
    32 hex digits of its SHA-256 (plain names never contain `_`).
    """
    if not value:
        raise ValueError("an identity token cannot be empty")
    if _PLAIN.fullmatch(value):
        return value
    return "_" + hashlib.sha256(value.encode()).hexdigest()[:32]


# Task ids are derived from (tenant, user, idempotency key) in this namespace.
# The longest idempotency key a task takes (the taskstore refuses longer; the outbox too).
MAX_IDEMPOTENCY_KEY = 256
_TASK_ID_NAMESPACE = uuid.UUID("6f1f4c4e-2b1a-4f53-9d59-0f1d9a3c7e21")


def task_id(tenant: str, user: str, basis: str) -> str:
    """A task's id: the same (tenant, user, idempotency key) always names the same task.

    The taskstore names tasks with it, and the gateway's disk outbox too, so
    that a message accepted while NATS was away keeps its id. No key: a fresh id.
    """
    if not basis:
        return uuid.uuid4().hex
    return uuid.uuid5(_TASK_ID_NAMESPACE, f"{tenant}\0{user}\0{basis}").hex
