"""The console's JSON API under `/console/api/`: what each page reads, and its actions.

Reads and actions on a tenant's data (tasks, escalations, audit records) go
to the taskstore and the security service with the signed-in admin's own
token, so those services decide, as for any caller: an admin reaches its
own tenant and nothing else. Every action needs the CSRF token and is
written to the audit log (by the security service, which takes who did it
from the token), refused or not.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from edgegate_common.errors import EdgegateError, InvalidArgument, PermissionDenied
from edgegate_common.logging import get_logger
from edgegate_common.tasks import ESCALATION_MODEL
from edgegate_gateway.adapters.http_json import json_object
from edgegate_gateway.console import views
from edgegate_gateway.console.auth import ConsoleAuth, Person
from edgegate_gateway.console.sources import Sources
from edgegate_protos.common.v1 import envelope_pb2 as env
from edgegate_protos.taskstore.v1 import taskstore_pb2 as tpb

log = get_logger(__name__)

Handler = Callable[[web.Request, Person], Awaitable[dict[str, Any]]]
MAX_ANSWER_CHARS = 8000
LIST_PAGE = 1000  # tasks read per listing call; the page shows the newest
MAX_PAGES = 5
SHOWN = 200
_SHARED_KNOWLEDGE = (
    "the knowledge base answers every tenant's users: only admins of the console's operator "
    "tenants add to it"
)


class ConsoleApi:
    def __init__(self, auth: ConsoleAuth, sources: Sources) -> None:
        self._auth = auth
        self._s = sources

    def add_routes(self, app: web.Application) -> None:
        reads: dict[str, Handler] = {
            "me": self.me,
            "overview": self.overview,
            "models": self.models,
            "rollouts": self.rollouts,
            "tenants": self.tenants,
            "tasks": self.tasks,
            "escalations": self.escalations,
            "breakers": self.breakers,
            "audit": self.audit,
        }
        for name, handler in reads.items():
            app.router.add_get(f"/console/api/{name}", self._read(handler))
        actions: dict[str, Handler] = {
            "/console/api/tasks/{id}/cancel": self.cancel_task,
            "/console/api/tasks/{id}/retry": self.retry_task,
            "/console/api/escalations/{id}/answer": self.answer,
            "/console/api/escalations/{id}/knowledge": self.add_knowledge,
            "/console/api/breakers/{model}/{version}": self.force_breaker,
            "/console/api/audit/verify": self.verify_audit,
        }
        for path, handler in actions.items():
            app.router.add_post(path, self._act(handler))

    # -- reads -----------------------------------------------------------

    async def me(self, request: web.Request, person: Person) -> dict[str, Any]:
        return {
            "subject": person.subject,
            "tenant": person.tenant,
            "operator": person.operator,
            "csrf": person.csrf,
        }

    async def overview(self, request: web.Request, person: Person) -> dict[str, Any]:
        return {
            "services": await self._s.services(),
            "nats": await self._s.nats(),
            "series": self._s.series(),
            "totals": self._s.observed.totals(),
        }

    async def models(self, request: web.Request, person: Person) -> dict[str, Any]:
        return {"models": self._s.model_versions()}

    async def rollouts(self, request: web.Request, person: Person) -> dict[str, Any]:
        return {"rollouts": self._s.rollouts(), "source": "NATS KV edgegate-rollouts"}

    async def tenants(self, request: web.Request, person: Person) -> dict[str, Any]:
        traffic = self._s.observed.tenant_traffic()
        names = {person.tenant}
        if person.operator:  # quotas are kept by a tenant's subject token: plain names only
            names |= set(traffic) | {k for k in self._s.quotas() if not k.startswith("_")}
        own = await self._all_tasks(person, tpb.ListRequest(page_size=LIST_PAGE))
        rows = []
        for tenant in sorted(names):
            row: dict[str, Any] = {
                "tenant": tenant,
                "quota": views.quota_view(self._s.quota(tenant)),
                "rate_per_s": 0.0,
                "throttled": 0,
                "throttled_per_s": 0.0,
            }
            row.update(traffic.get(tenant, {}))
            row["throttled"] = int(row["throttled"])
            # Only the admin's own tenant: the taskstore lists no other's tasks.
            row["tasks"] = views.tasks_by_state(own) if tenant == person.tenant else None
            rows.append(row)
        return {"tenants": rows}

    async def tasks(self, request: web.Request, person: Person) -> dict[str, Any]:
        query = request.query
        listing = tpb.ListRequest(page_size=LIST_PAGE, user=query.get("user", "").strip())
        status = query.get("status", "")
        if status:
            if status not in views.STATUS_BY_NAME:
                raise InvalidArgument(
                    f"status {status!r} is not one of {', '.join(views.STATUS_BY_NAME)}"
                )
            listing.statuses.append(views.STATUS_BY_NAME[status])
        model = query.get("model", "").strip()
        found = await self._all_tasks(person, listing)
        if model:
            found = [t for t in found if (t.model or t.envelope.route.model).startswith(model)]
        newest = _newest(found)
        return {
            "tasks": [views.task_view(t) for t in newest[:SHOWN]],
            "next_page_token": "more" if len(newest) > SHOWN else "",
        }

    async def escalations(self, request: web.Request, person: Person) -> dict[str, Any]:
        listing = tpb.ListRequest(page_size=LIST_PAGE, model=ESCALATION_MODEL)
        view = request.query.get("status", "")
        if view not in ("", "open", "answered"):
            raise InvalidArgument("'status' must be open or answered")
        if view == "open":
            listing.statuses.append(tpb.TASK_STATUS_PENDING)
        found = await self._all_tasks(person, listing)
        if view == "answered":
            found = [t for t in found if t.status != tpb.TASK_STATUS_PENDING]
        return {"escalations": [views.escalation_view(t) for t in _newest(found)[:SHOWN]]}

    async def breakers(self, request: web.Request, person: Person) -> dict[str, Any]:
        return {"breakers": self._s.breakers()}

    async def audit(self, request: web.Request, person: Person) -> dict[str, Any]:
        before = _whole(request.query.get("before") or "0", "before")
        event = request.query.get("event", "")
        listed = await self._s.security.list_audit(
            credential=person.credential, before_sequence=before, limit=50, event=event
        )
        return {
            "records": [
                {
                    "seq": r.seq,
                    "time": r.time,
                    "event": r.event,
                    "reason": r.reason,
                    "tenant": r.tenant,
                    "subject": r.subject,
                    "token_id": r.token_id,
                    "request_id": r.request_id,
                    "details": dict(r.details),
                }
                for r in listed.records
            ],
            "next_before": listed.next_before_sequence,
        }

    # -- actions ---------------------------------------------------------

    async def cancel_task(self, request: web.Request, person: Person) -> dict[str, Any]:
        task = await self._s.taskstore.cancel(
            request.match_info["id"], credential=person.credential
        )
        return {"task": views.task_view(task)}

    async def retry_task(self, request: web.Request, person: Person) -> dict[str, Any]:
        task = await self._s.taskstore.retry(request.match_info["id"], credential=person.credential)
        return {"task": views.task_view(task)}

    async def answer(self, request: web.Request, person: Person) -> dict[str, Any]:
        body = await json_object(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidArgument("write an answer first: 'text' is empty")
        if len(text) > MAX_ANSWER_CHARS:
            raise InvalidArgument(
                f"the answer is {len(text)} characters; at most {MAX_ANSWER_CHARS}"
            )
        reply = env.Reply()
        reply.parts.add(text=text.strip())
        reply.metadata["answered_by"] = person.subject
        task = await self._s.taskstore.answer(
            request.match_info["id"], reply, credential=person.credential
        )
        knowledge = "skipped"
        if body.get("add_to_knowledge") is True:
            knowledge = (
                await self._s.add_knowledge(task, person)
                if person.operator
                else f"refused: {_SHARED_KNOWLEDGE}"
            )
        return {"escalation": views.escalation_view(task), "knowledge": knowledge}

    async def add_knowledge(self, request: web.Request, person: Person) -> dict[str, Any]:
        if not person.operator:
            raise PermissionDenied(_SHARED_KNOWLEDGE)
        task = await self._s.taskstore.get(request.match_info["id"], credential=person.credential)
        if task.envelope.route.model != ESCALATION_MODEL:
            raise InvalidArgument("only an answered escalation joins the knowledge base")
        if task.status != tpb.TASK_STATUS_COMPLETED:
            raise InvalidArgument("answer the question first; then it can join the knowledge base")
        return {"knowledge": await self._s.add_knowledge(task, person)}

    async def force_breaker(self, request: web.Request, person: Person) -> dict[str, Any]:
        if not person.operator:
            raise PermissionDenied(
                f"breakers belong to the whole suite; tenant {person.tenant!r} is not one of "
                "the console's operator tenants"
            )
        mode = (await json_object(request)).get("mode")
        if mode not in ("open", "closed", "auto"):
            raise InvalidArgument("'mode' must be open, closed or auto")
        model, version = request.match_info["model"], request.match_info["version"]
        return {"breaker": await self._s.force_breaker(model, version, mode)}

    async def verify_audit(self, request: web.Request, person: Person) -> dict[str, Any]:
        result = await self._s.security.verify_audit(credential=person.credential)
        return {
            "intact": result.intact,
            "records_checked": result.records_checked,
            "problem": result.problem,
            "kind": result.kind,
            "head_sequence": result.head_sequence,
            "first_broken_sequence": result.first_broken_sequence,
        }

    # -- plumbing --------------------------------------------------------

    def _read(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def read(request: web.Request) -> web.Response:
            person = await self._auth.person(request)
            return _json(await handler(request, person))

        return read

    def _act(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """An action: signed in, from our page (CSRF), and audited whatever its outcome."""

        async def act(request: web.Request) -> web.Response:
            person = await self._auth.person(request)
            action = _action_name(request)
            target = "/".join(request.match_info.values())
            try:
                self._auth.check_action(request, person)
                result = await handler(request, person)
            except EdgegateError as exc:
                await self._s.record(person, action, target, outcome=exc.code.name.lower())
                raise
            await self._s.record(person, action, target, outcome="ok")
            return _json(result)

        return act

    async def _all_tasks(self, person: Person, listing: tpb.ListRequest) -> list[tpb.Task]:
        """The tenant's tasks the listing matches, up to MAX_PAGES pages (oldest first)."""
        found: list[tpb.Task] = []
        for _ in range(MAX_PAGES):
            listed = await self._s.taskstore.list(listing, credential=person.credential)
            found.extend(listed.tasks)
            if not listed.next_page_token:
                break
            listing.page_token = listed.next_page_token
        return found


def _action_name(request: web.Request) -> str:
    """`tasks.cancel`, `escalations.answer`, `breakers.force`, `audit.verify`."""
    resource = request.match_info.route.resource
    parts = [p for p in (resource.canonical if resource else "").split("/")[3:] if p]
    words = [p for p in parts if not p.startswith("{")]
    if words == ["breakers"]:
        words.append("force")
    return ".".join(words)


def _newest(tasks: list[tpb.Task]) -> list[tpb.Task]:
    return sorted(tasks, key=lambda t: t.updated_at.ToNanoseconds(), reverse=True)


def _whole(raw: str, name: str) -> int:
    if not raw.isdigit():
        raise InvalidArgument(f"'{name}' must be a whole number")
    return int(raw)


def _json(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, headers={"Cache-Control": "no-store"})
