"""HTTP `/v1/tasks`: work that runs when its model can, followed up later.

`POST /v1/tasks` admits the input like any other message and hands it to the
taskstore (202, with the task). `GET /v1/tasks/{id}` and `GET /v1/tasks`
(filters, pages, `after_revision` to catch up after being away) read it back
through the taskstore with the caller's own token, so each caller sees only
its tenant's (and, without `admin`, its own) tasks.
"""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from edgegate_common.errors import InvalidArgument
from edgegate_gateway.adapters.http_json import field, json_object, text_field, text_inputs
from edgegate_gateway.adapters.taskstore_client import TaskstoreClient
from edgegate_gateway.pipeline import Offline, Pipeline
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

_PRIORITIES: dict[str, env.Priority.ValueType] = {
    "low": env.PRIORITY_LOW,
    "normal": env.PRIORITY_NORMAL,
    "high": env.PRIORITY_HIGH,
}
_STATUSES: dict[str, tpb.TaskStatus.ValueType] = {
    "pending": tpb.TASK_STATUS_PENDING,
    "processing": tpb.TASK_STATUS_PROCESSING,
    "completed": tpb.TASK_STATUS_COMPLETED,
    "failed": tpb.TASK_STATUS_FAILED,
    "cancelled": tpb.TASK_STATUS_CANCELLED,
}
_STATUS_NAMES = {v: k for k, v in _STATUSES.items()}
_PRIORITY_NAMES = {v: k for k, v in _PRIORITIES.items()}
# Which backend answered, as responses name it (`Edgegate-Backend`, a task's result).
BACKEND_NAMES = {
    env.BACKEND_LOCAL: "local",
    env.BACKEND_FALLBACK: "fallback",
    env.BACKEND_TASKSTORE: "taskstore",
}


class TasksHttp:
    def __init__(self, pipeline: Pipeline, *, taskstore: TaskstoreClient) -> None:
        self._pipeline = pipeline
        self._taskstore = taskstore

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/tasks", self.submit)
        app.router.add_get("/v1/tasks", self.list)
        app.router.add_get("/v1/tasks/{task_id}", self.get)

    async def submit(self, request: web.Request) -> web.Response:
        body = await json_object(request)
        envelope = env.Envelope(
            channel=env.CHANNEL_HTTP,
            route=env.RouteHint(
                model=field(body, "model", str), version=text_field(body, "version", required=False)
            ),
            idempotency_key=text_field(body, "idempotency_key", required=False),
            priority=text_priority(body.get("priority", "normal")),
        )
        for text in text_inputs(body.get("input")):
            envelope.parts.add(text=text)
        handled = await self._pipeline.handle(
            envelope, credential=_credential(request), defer=True, offline=Offline.DEFER
        )
        task = handled.task
        assert task is not None  # deferred work is always kept as a task
        return web.json_response(
            task_json(task), status=202, headers={"Location": f"/v1/tasks/{task.id}"}
        )

    async def get(self, request: web.Request) -> web.Response:
        task = await self._taskstore.get(
            request.match_info["task_id"], credential=_credential(request)
        )
        return web.json_response(task_json(task))

    async def list(self, request: web.Request) -> web.Response:
        query = request.query
        listing = tpb.ListRequest(
            user=query.get("user", ""),
            statuses=[_status(s) for s in query.get("status", "").split(",") if s],
            page_size=_integer(query, "page_size"),
            page_token=query.get("page_token", ""),
            after_revision=_integer(query, "after_revision"),
        )
        page = await self._taskstore.list(listing, credential=_credential(request))
        return web.json_response(
            {
                "object": "list",
                "data": [task_json(t) for t in page.tasks],
                "next_page_token": page.next_page_token or None,
            }
        )


def task_json(task: tpb.Task) -> dict[str, Any]:
    """A task as `/v1/tasks` shows it."""
    result = None
    if task.HasField("result"):
        result = {
            "backend": BACKEND_NAMES.get(task.result.backend, "local"),
            "model_version": task.model,
            "outputs": [_part_json(p) for p in task.result.parts],
            "metadata": dict(task.result.metadata),
        }
    error = None
    if task.HasField("error") and task.error.code:
        error = {
            "code": env.ErrorCode.Name(task.error.code).removeprefix("ERROR_CODE_"),
            "message": task.error.message,
        }
    return {
        "id": task.id,
        "object": "task",
        "status": _STATUS_NAMES.get(task.status, "unknown"),
        "model": task.envelope.route.model,
        "input": [p.text for p in task.envelope.parts if p.WhichOneof("content") == "text"],
        "conversation": task.envelope.conversation or None,
        "idempotency_key": task.envelope.idempotency_key or None,
        "priority": _PRIORITY_NAMES.get(task.priority, "normal"),
        "attempts": task.attempts,
        "retries": task.retries,
        "revision": task.revision,
        "notified": task.reported,  # the result event is published
        "created_at": task.created_at.ToNanoseconds() / 1e9,
        "updated_at": task.updated_at.ToNanoseconds() / 1e9,
        "result": result,
        "error": error,
    }


def _part_json(part: env.Part) -> dict[str, Any]:
    if part.WhichOneof("content") == "tensor":
        t = part.tensor
        return {
            "type": "tensor",
            "name": t.name,
            "datatype": t.datatype,
            "shape": list(t.shape),
            "data_base64": base64.b64encode(t.raw_data).decode("ascii"),
        }
    if part.WhichOneof("content") == "text":
        return {"type": "text", "text": part.text}
    return {"type": part.WhichOneof("content") or "empty"}


def _credential(request: web.Request) -> str:
    return request.headers.get("Authorization", "")


def text_priority(value: object) -> env.Priority.ValueType:
    if not isinstance(value, str) or value not in _PRIORITIES:  # a list is unhashable
        raise InvalidArgument(
            f"'priority' must be one of {sorted(_PRIORITIES)}", details={"param": "priority"}
        )
    return _PRIORITIES[value]


def _status(value: str) -> tpb.TaskStatus.ValueType:
    if value not in _STATUSES:
        raise InvalidArgument(
            f"status {value!r} is not one of {sorted(_STATUSES)}", details={"param": "status"}
        )
    return _STATUSES[value]


def _integer(query: Any, name: str) -> int:
    raw = query.get(name, "0")
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise InvalidArgument(f"'{name}' must be a non-negative integer", details={"param": name})
    return int(raw)
