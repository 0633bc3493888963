"""Every door of the running suite against one rule table: who may call what.

The doors are read from the running services, not written down here: each
gRPC server's services come from its reflection service and their methods
from the descriptors; the gateway's HTTP routes come from its running app's
router (the routes it logs when it starts serving). Each door must have a rule
in `GRPC_RULES` / `HTTP_RULES`, so a new RPC or route without one fails this
test by name. Every rule is then probed: with no credential, with another
tenant's token (where the call touches one tenant's data) and with a valid
token lacking each scope the rule needs; a refusal must come with the right
code, and at the end the victim tenant's tasks and session state are as
they were. docs/security.md ("Authorization by door") is this table in prose.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.bots_stack import BotsStack
from support.suite_stack import (
    OTHER_TENANT,
    TENANT,
    TEXT_MODEL,
    Stack,
    bearer,
    eventually,
    finished,
    text_envelope,
)

from edgegate_gateway.console.auth import COOKIE, csrf_token
from edgegate_protos import INFERENCE_POOL
from edgegate_protos.gateway.v1 import gateway_pb2
from edgegate_protos.oip import grpc_service_pb2 as opb
from edgegate_protos.security.v1 import security_pb2
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

Code = grpc.StatusCode
# Imported for their descriptors: the services a server lists are looked up in these pools.
DESCRIBED = (gateway_pb2, security_pb2, pb, opb, health_pb2, reflection_pb2)
MARKER = "victim-marker"  # in the victim's task and state: no other caller may see it
ALL_SCOPES = ("infer:*", "tasks:read", "tasks:write")
ASSISTANT = "edgegate-assistant"


@dataclass(frozen=True)
class Rule:
    """Who may call a door.

    kind: "public" (anyone: health, reflection, public keys), "internal" (the
    cluster-internal data plane: anyone who reaches the port, as Triton's;
    NetworkPolicies keep the rest off), "bearer" (a token and `scopes`),
    "admin" (a token with `admin`), "token-in-request" (the request carries
    the token to check), "key" (the repository-control key), "signature" (a
    chat platform's signature), "unimplemented".
    tenant: "" (touches no tenant's data), "refused" (the request names the
    victim's data: another tenant is refused), "own" (the answer comes from
    the caller's own tenant whatever the request says).
    """

    kind: str
    scopes: tuple[str, ...] = ()
    tenant: str = ""


INTERNAL, PUBLIC = Rule("internal"), Rule("public")

GRPC_RULES: dict[str, Rule] = {
    # security
    "edgegate.security.v1.Security/Authenticate": Rule("token-in-request"),
    "edgegate.security.v1.Security/Authorize": INTERNAL,  # a decision about a given principal
    "edgegate.security.v1.Security/Inspect": INTERNAL,  # content checks, no data kept
    "edgegate.security.v1.Security/Admit": Rule(
        "token-in-request", (f"infer:{TEXT_MODEL}",), "refused"
    ),
    "edgegate.security.v1.Security/IssueToken": Rule("admin", ("admin",), "refused"),
    "edgegate.security.v1.Security/GetJwks": PUBLIC,
    "edgegate.security.v1.Security/VerifyAudit": Rule("admin", ("admin",)),
    "edgegate.security.v1.Security/Restore": Rule("admin", ("admin",), "own"),
    "edgegate.security.v1.Security/RecordAction": Rule("admin", ("admin",), "own"),
    "edgegate.security.v1.Security/ListAudit": Rule("admin", ("admin",), "own"),
    # taskstore
    "edgegate.taskstore.v1.TaskStore/Submit": Rule(
        "bearer", ("tasks:write", f"infer:{TEXT_MODEL}"), "refused"
    ),
    "edgegate.taskstore.v1.TaskStore/Get": Rule("bearer", ("tasks:read",), "refused"),
    "edgegate.taskstore.v1.TaskStore/List": Rule("bearer", ("tasks:read",), "own"),
    "edgegate.taskstore.v1.TaskStore/Watch": Rule("bearer", ("tasks:read",), "own"),
    "edgegate.taskstore.v1.TaskStore/Cancel": Rule("bearer", ("tasks:write",), "refused"),
    "edgegate.taskstore.v1.TaskStore/Answer": Rule("admin", ("admin",), "refused"),
    "edgegate.taskstore.v1.TaskStore/Retry": Rule(
        "bearer", ("tasks:write", f"infer:{TEXT_MODEL}"), "refused"
    ),
    "edgegate.taskstore.v1.TaskStore/MergeState": Rule("bearer", ("tasks:write",), "own"),
    "edgegate.taskstore.v1.TaskStore/GetState": Rule("bearer", ("tasks:read",), "own"),
    # gateway
    "edgegate.gateway.v1.Gateway/Send": Rule("bearer", (f"infer:{TEXT_MODEL}",), "refused"),
    "edgegate.gateway.v1.Gateway/Converse": Rule("bearer", (f"infer:{TEXT_MODEL}",), "own"),
    # inference: the data plane is internal; repository control needs the key
    **{
        f"inference.GRPCInferenceService/{name}": INTERNAL
        for name in (
            "ServerLive",
            "ServerReady",
            "ModelReady",
            "ServerMetadata",
            "ModelMetadata",
            "ModelConfig",
            "ModelInfer",
            "ModelStreamInfer",
            "ModelStatistics",
            "RepositoryIndex",
        )
    },
    "inference.GRPCInferenceService/RepositoryModelLoad": Rule("key"),
    "inference.GRPCInferenceService/RepositoryModelUnload": Rule("key"),
    **{
        f"inference.GRPCInferenceService/{name}": Rule("unimplemented")
        for name in (
            "SystemSharedMemoryStatus",
            "SystemSharedMemoryRegister",
            "SystemSharedMemoryUnregister",
            "CudaSharedMemoryStatus",
            "CudaSharedMemoryRegister",
            "CudaSharedMemoryUnregister",
            "TraceSetting",
            "LogSettings",
        )
    },
    # every server
    "grpc.health.v1.Health/Check": PUBLIC,
    "grpc.health.v1.Health/Watch": PUBLIC,
    "grpc.health.v1.Health/List": PUBLIC,
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": PUBLIC,
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo": PUBLIC,
}

HTTP_RULES: dict[str, Rule] = {
    "GET /v1/models": Rule("bearer"),  # any valid token: the names every tenant may call
    "POST /v1/embeddings": Rule("bearer", (f"infer:{TEXT_MODEL}",)),
    # The assistant runs its embedding model (--assistant-model) on the caller's behalf.
    "POST /v1/chat/completions": Rule("bearer", (f"infer:{TEXT_MODEL}",)),
    "POST /v1/tasks": Rule("bearer", ("tasks:write", f"infer:{TEXT_MODEL}")),
    "GET /v1/tasks": Rule("bearer", ("tasks:read",), "own"),
    "GET /v1/tasks/{task_id}": Rule("bearer", ("tasks:read",), "refused"),
    "GET /ws": Rule("bearer", (f"infer:{TEXT_MODEL}",), "own"),
    "POST /webhooks/telegram": Rule("signature"),
    "POST /webhooks/slack": Rule("signature"),
    "POST /webhooks/discord": Rule("signature"),
    "POST /webhooks/whatsapp": Rule("signature"),
    "GET /webhooks/whatsapp": Rule("signature"),  # the verify-token handshake
    # The console: signing in, out and its files are open; pages and API need the session
    # cookie of an admin token (a bearer header is not a session), actions its CSRF token too.
    **dict.fromkeys((
        "GET /console", "GET /console/", "GET /console/login", "POST /console/login",
        "POST /console/logout", "GET /console/static",
    ), PUBLIC),
    **{f"GET /console/{page}": Rule("console-page", ("admin",)) for page in (
        "overview", "models", "rollouts", "tenants", "tasks", "escalations", "breakers", "audit",
    )},
    **{f"GET /console/api/{read}": Rule("console", ("admin",)) for read in (
        "me", "overview", "models", "rollouts", "breakers",
    )},
    **{f"GET /console/api/{read}": Rule("console", ("admin",), "own") for read in (
        "tenants", "tasks", "escalations", "audit",
    )},
    **{f"POST /console/api/{act}": Rule("console", ("admin",), "refused") for act in (
        "tasks/{id}/cancel", "tasks/{id}/retry", "escalations/{id}/answer",
        "escalations/{id}/knowledge",
    )},
    # Breakers belong to the suite: only the console's operator tenants (none here) act on them.
    "POST /console/api/breakers/{model}/{version}": Rule("console", ("admin",), "refused"),
    "POST /console/api/audit/verify": Rule("console", ("admin",)),
}  # fmt: skip


@dataclass
class Suite:
    stack: Stack
    http_port: int
    victim_task: str = ""

    def token(self, *scopes: str, tenant: str = TENANT, sub: str = "prober") -> str:
        return self.stack.token(*scopes, tenant=tenant, sub=sub)

    def lacking(self, scope: str) -> str:
        """The victim's own token with every scope but `scope`: refused for that alone."""
        granted = [s for s in ALL_SCOPES if not _covers(s, scope)]
        return self.token(*(granted or ["tasks:read"]), sub="alice")


def _covers(granted: str, needed: str) -> bool:
    return granted == needed or (granted.endswith("*") and needed.startswith(granted[:-1]))


@pytest.fixture(scope="module")
def suite(shared_bots_stack: BotsStack) -> Suite:
    running = Suite(shared_bots_stack.stack, shared_bots_stack.http_port)
    asyncio.run(_victim(running))
    return running


async def _victim(suite: Suite) -> None:
    """Alice of the victim tenant: a finished task and some session state, both marked."""
    alice = suite.token(*ALL_SCOPES, sub="alice")
    async with suite.stack.stub() as stub:
        task = await stub.Submit(
            pb.SubmitRequest(envelope=text_envelope(MARKER, key="victim")), metadata=bearer(alice)
        )
        state = pb.SessionState(conversation="chat")
        state.fields["note"].value_json = json.dumps(MARKER)
        state.fields["note"].at.wall_ms, state.fields["note"].at.node = 1, "phone"
        await stub.MergeState(pb.MergeStateRequest(state=state), metadata=bearer(alice))

        async def done() -> pb.Task | None:
            got = await stub.Get(pb.GetRequest(id=task.id), metadata=bearer(alice))
            return got if finished(got) else None

        await eventually(done, what="the victim's task")
    suite.victim_task = task.id


async def _snapshot(suite: Suite) -> tuple[object, ...]:
    alice = suite.token(*ALL_SCOPES, sub="alice")
    admin = suite.token("admin", sub="ops")
    async with suite.stack.stub() as stub:
        tasks = await stub.List(pb.ListRequest(page_size=1000), metadata=bearer(admin))
        state = await stub.GetState(pb.GetStateRequest(conversation="chat"), metadata=bearer(alice))
    async with grpc.aio.insecure_channel(_targets(suite)["inference"]) as channel:
        index = await _stub_call(channel, "inference.GRPCInferenceService/RepositoryIndex")
    return (
        sorted((t.id, t.revision, t.status) for t in tasks.tasks),
        state.SerializeToString(deterministic=True),
        index,
    )


def _targets(suite: Suite) -> dict[str, str]:
    stack = suite.stack
    assert stack.inference is not None
    return {
        "security": stack.security.target,
        "taskstore": stack.taskstores[0].target,
        "inference": stack.inference.target,
        "gateway": stack.gateways[0].target,
    }


def _method(full: str) -> MethodDescriptor:
    service_name, name = full.split("/")
    for pool in (descriptor_pool.Default(), INFERENCE_POOL):
        try:
            service: ServiceDescriptor = pool.FindServiceByName(service_name)
        except KeyError:
            continue
        return service.methods_by_name[name]
    raise AssertionError(f"{service_name} is in no descriptor pool this test knows")


async def _served_methods(target: str) -> list[str]:
    """The RPCs a running server offers, from its reflection service."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in stub.ServerReflectionInfo(iter([request])):
            names = [s.name for s in response.list_services_response.service]
            break
    methods = []
    for name in names:
        for pool in (descriptor_pool.Default(), INFERENCE_POOL):
            try:
                service = pool.FindServiceByName(name)
            except KeyError:
                continue
            methods += [f"{name}/{m.name}" for m in service.methods]
            break
        else:
            methods.append(f"{name}/*")  # a service this test cannot even describe
    return methods


def _request(suite: Suite, full: str, tenant: str = "") -> Message:
    """A request for `full` that names the victim's data (and tenant, where it can)."""
    method = _method(full)
    request = GetMessageClass(method.input_type)()
    envelope = text_envelope("probe", key="probe")
    envelope.tenant = tenant
    match "" if full.startswith("grpc.health.") else full.split("/")[1]:
        case "Submit" | "Admit" | "Send" | "Converse":
            request.envelope.CopyFrom(envelope)  # type: ignore[attr-defined]
        case "Get" | "Cancel" | "Retry":
            request.id = suite.victim_task  # type: ignore[attr-defined]
        case "Answer":
            request.id = suite.victim_task  # type: ignore[attr-defined]
            request.answer.parts.add(text="probe")  # type: ignore[attr-defined]
        case "RecordAction":
            request.action, request.outcome = "probe.action", "ok"  # type: ignore[attr-defined]
        case "GetState":
            request.conversation = "chat"  # type: ignore[attr-defined]
        case "MergeState":
            request.state.conversation = "chat"  # type: ignore[attr-defined]
        case "Watch":
            request.after_revision = 1  # type: ignore[attr-defined]
        case "IssueToken":
            request.tenant, request.subject = TENANT, "minted"  # type: ignore[attr-defined]
            request.scopes.append("admin")  # type: ignore[attr-defined]
        case "Restore":
            request.text = "probe"  # type: ignore[attr-defined]
        case "RepositoryModelLoad" | "RepositoryModelUnload":
            request.model_name = TEXT_MODEL  # type: ignore[attr-defined]
        case "ModelInfer" | "ModelStreamInfer":
            # By bytes: tritonclient, when imported, describes the same messages in its own pool.
            request.ParseFromString(_infer_request().SerializeToString())
        case "ModelReady" | "ModelMetadata" | "ModelConfig" | "ModelStatistics":
            request.name = TEXT_MODEL  # type: ignore[attr-defined]
        case "ServerReflectionInfo":
            request.list_services = ""  # type: ignore[attr-defined]
    return request


def _infer_request() -> opb.ModelInferRequest:
    request = opb.ModelInferRequest(model_name=TEXT_MODEL)
    request.inputs.add(name="TEXT", datatype="BYTES", shape=[1, 1]).contents.bytes_contents.append(
        b"probe"
    )
    return request


async def _stub_call(
    channel: grpc.aio.Channel, full: str, request: Message | None = None, metadata: tuple = ()
) -> bytes:
    """Call `full` generically; the answer's bytes (the first one of a stream)."""
    method = _method(full)
    path = f"/{full}"
    decode = GetMessageClass(method.output_type).FromString
    request = request if request is not None else GetMessageClass(method.input_type)()
    kwargs = {"metadata": metadata, "timeout": 10}
    encode: Callable[[Message], bytes] = lambda m: m.SerializeToString()  # noqa: E731
    if method.client_streaming:
        # With no credential the server refuses before it reads; a message written meanwhile
        # races that refusal inside grpc's core (INTERNAL now and then), so none is written.
        sent = iter([request]) if metadata else iter(())
        call = channel.stream_stream(path, encode, decode)(sent, **kwargs)
    elif method.server_streaming:
        call = channel.unary_stream(path, encode, decode)(request, **kwargs)
    else:
        return (
            await channel.unary_unary(path, encode, decode)(request, **kwargs)
        ).SerializeToString()
    try:
        first = await asyncio.wait_for(call.read(), timeout=2)
    except TimeoutError:
        return b""  # an open stream with nothing to say yet (a Watch of an empty tenant)
    finally:
        call.cancel()
    if first is grpc.aio.EOF:
        await call.code()  # raises the status, if the stream ended with one
        return b""
    return first.SerializeToString()


async def _grpc_code(
    channel: grpc.aio.Channel, full: str, request: Message, credential: str | None
) -> tuple[Code, bytes]:
    """The call's code, and what it said: the answer's bytes, or the error's details."""
    metadata: tuple[tuple[str, str], ...] = bearer(credential) if credential else ()
    try:
        answer = await _stub_call(channel, full, request, metadata)
    except grpc.aio.AioRpcError as exc:
        return exc.code(), (exc.details() or "").encode()
    if full == "edgegate.gateway.v1.Gateway/Converse":  # a message is refused in-band
        error = gateway_pb2.ConverseResponse.FromString(answer).reply.error
        return _CODES[error.code], error.message.encode() if error.code else answer
    return Code.OK, answer


_CODES = {code.value[0]: code for code in Code}


def test_every_served_rpc_and_route_has_a_rule(suite: Suite) -> None:
    served = [
        method
        for target in _targets(suite).values()
        for method in asyncio.run(_served_methods(target))
    ]
    missing = sorted({m for m in served if m not in GRPC_RULES})
    assert not missing, f"RPCs without an authorization rule: {missing}"
    routes = _http_routes(suite)
    assert routes, "the gateway logged no routes"
    missing = sorted(r for r in routes if r not in HTTP_RULES)
    assert not missing, f"HTTP routes without an authorization rule: {missing}"


def _http_routes(suite: Suite) -> list[str]:
    log = Path(suite.stack.folder / "gateway-0.log").read_text(encoding="utf-8")
    for line in log.splitlines():
        if '"http serving"' in line:
            return list(json.loads(line)["routes"])
    return []


AUTH_CODES = {Code.UNAUTHENTICATED, Code.PERMISSION_DENIED}


async def _probe_grpc(suite: Suite, full: str, rule: Rule, target: str) -> list[str]:
    """What `full` answered that its rule does not allow, as readable lines."""
    wrong: list[str] = []
    other = suite.token(*ALL_SCOPES, "admin", tenant=OTHER_TENANT, sub="alice")
    async with grpc.aio.insecure_channel(target) as channel:

        async def expect(case: str, allowed: set[Code], credential: str | None, **kw: str) -> bytes:
            request = _request(suite, full, tenant=kw.get("tenant", ""))
            if rule.kind == "token-in-request":
                request.token = credential or ""  # type: ignore[attr-defined]
                credential = None
            code, answer = await _grpc_code(channel, full, request, credential)
            if code not in allowed:
                wrong.append(
                    f"{full} {case}: {code.name}, expected {sorted(c.name for c in allowed)}"
                )
            return answer

        if rule.kind in ("public", "internal"):
            await expect("no credential", {c for c in Code if c not in AUTH_CODES}, None)
        elif rule.kind == "unimplemented":
            await expect("no credential", {Code.UNIMPLEMENTED}, None)
        elif rule.kind == "key":  # off by default: nothing opens it, a bearer token least of all
            await expect("no key", {Code.PERMISSION_DENIED}, None)
            await expect("an admin token", {Code.PERMISSION_DENIED}, suite.token("admin"))
        else:
            await expect("no token", {Code.UNAUTHENTICATED}, None)
            for scope in rule.scopes:
                said = await expect(
                    f"without {scope}", {Code.PERMISSION_DENIED}, suite.lacking(scope)
                )
                if scope.encode() not in said:
                    wrong.append(f"{full} without {scope}: refused for another reason: {said!r}")
            if rule.tenant == "refused":
                await expect(
                    "another tenant", {Code.PERMISSION_DENIED, Code.NOT_FOUND}, other, tenant=TENANT
                )
            elif rule.tenant == "own":
                answer = await expect("another tenant", set(Code), other)
                if MARKER.encode() in answer:
                    wrong.append(f"{full}: another tenant's call saw the victim's data")
    return wrong


def test_every_rpc_refuses_what_its_rule_refuses(suite: Suite) -> None:
    before = asyncio.run(_snapshot(suite))

    async def probe_all() -> list[str]:
        wrong: list[str] = []
        for target in _targets(suite).values():
            for full in await _served_methods(target):
                wrong += await _probe_grpc(suite, full, GRPC_RULES[full], target)
        return wrong

    wrong = asyncio.run(probe_all())
    assert not wrong, "\n".join(wrong)
    assert asyncio.run(_snapshot(suite)) == before, "a refused call changed the victim's state"


# Headers that carry each platform's signature, sent wrong (a signature by another secret).
WRONG_SIGNATURES = {
    "/webhooks/telegram": {"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"},
    "/webhooks/slack": {"X-Slack-Signature": "v0=" + "0" * 64, "X-Slack-Request-Timestamp": "1"},
    "/webhooks/discord": {"X-Signature-Ed25519": "00" * 64, "X-Signature-Timestamp": "1"},
    "/webhooks/whatsapp": {"X-Hub-Signature-256": "sha256=" + "0" * 64},
}
HTTP_BODIES: dict[str, dict[str, object]] = {
    "POST /v1/embeddings": {"model": TEXT_MODEL, "input": "probe"},
    "POST /v1/chat/completions": {
        "model": ASSISTANT,
        "messages": [{"role": "user", "content": "probe"}],
    },
    "POST /v1/tasks": {"model": TEXT_MODEL, "input": "probe", "idempotency_key": "probe"},
    "POST /console/api/escalations/{id}/answer": {"text": "probe"},
    "POST /console/api/breakers/{model}/{version}": {"mode": "open"},
}


async def _probe_http(
    suite: Suite, route: str, rule: Rule, http: aiohttp.ClientSession
) -> list[str]:
    method, path = route.split(" ", 1)
    path = path.replace("{task_id}", suite.victim_task).replace("{id}", suite.victim_task)
    path = path.replace("{model}", TEXT_MODEL).replace("{version}", "1")
    other = suite.token(*ALL_SCOPES, "admin", tenant=OTHER_TENANT, sub="alice")
    wrong: list[str] = []
    if rule.kind == "public":
        return wrong

    async def expect(case: str, allowed: set[int], token: str | None, **kw: object) -> str:
        headers = dict(kw.pop("headers", {}))  # type: ignore[call-overload]
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = HTTP_BODIES.get(route)
        async with http.request(method, path, json=body, headers=headers, **kw) as response:
            text = await response.text()
            if response.status not in allowed:
                wrong.append(f"{route} {case}: {response.status}, expected one of {allowed}")
        return text

    if path == "/ws":
        return await _probe_ws(suite, rule, http, other)
    if rule.kind.startswith("console"):
        return wrong + await _probe_console(route, rule, expect, suite, other)
    if rule.kind == "signature":
        if method == "GET":  # WhatsApp's handshake: the verify token is the secret
            query = {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"}
            await expect("a wrong verify token", {403}, None, params=query)
        else:
            await expect("unsigned", {401, 403}, None)
            await expect("wrongly signed", {401, 403}, None, headers=WRONG_SIGNATURES[path])
        return wrong
    await expect("no token", {401}, None)
    for scope in rule.scopes:
        said = await expect(f"without {scope}", {403}, suite.lacking(scope))
        if scope not in said:
            wrong.append(f"{route} without {scope}: refused for another reason: {said}")
    if rule.tenant == "refused":
        await expect("another tenant", {403, 404}, other)
    elif rule.tenant == "own" and MARKER in await expect("another tenant", {200}, other):
        wrong.append(f"{route}: another tenant saw the victim's data")
    return wrong


async def _probe_console(
    route: str, rule: Rule, expect: Callable[..., Any], suite: Suite, other: str
) -> list[str]:
    """A console door: the session cookie of an admin token, and for actions its CSRF token."""
    wrong: list[str] = []

    def session(token: str) -> dict[str, str]:
        return {"Cookie": f"{COOKIE}={token}", "X-CSRF-Token": csrf_token(token)}

    page = rule.kind == "console-page"
    refused = {303} if page else {401}
    await expect("no session", refused, None, allow_redirects=False)
    admin = suite.token(*ALL_SCOPES, "admin", sub="ops")
    await expect("a bearer header, no session", refused, admin, allow_redirects=False)
    for scope in rule.scopes:
        lacking = session(suite.lacking(scope))
        await expect(f"without {scope}", {303} if page else {403}, None, headers=lacking,
                     allow_redirects=False)  # fmt: skip
    if rule.tenant == "refused":
        await expect("another tenant", {403, 404}, None, headers=session(other))
    elif rule.tenant == "own" and MARKER in await expect(
        "another tenant", {200}, None, headers=session(other)
    ):
        wrong.append(f"{route}: another tenant saw the victim's data")
    return wrong


async def _probe_ws(suite: Suite, rule: Rule, http: aiohttp.ClientSession, other: str) -> list[str]:
    """The WebSocket authenticates in its first frame; a message needs the model's scope."""
    wrong: list[str] = []

    async def first_error(token: str | None, *, send: bool) -> str:
        async with http.ws_connect("/ws") as ws:
            await ws.send_json({"type": "authenticate", **({"token": token} if token else {})})
            if send:
                await ws.send_json({"type": "send", "model": TEXT_MODEL, "text": "probe"})
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                frame = json.loads(message.data)
                if MARKER in message.data:
                    wrong.append("GET /ws: another tenant saw the victim's data")
                if frame["type"] in ("error", "ack"):
                    return str(frame.get("code", "OK"))
        return "closed"

    if (code := await first_error(None, send=False)) != "UNAUTHENTICATED":
        wrong.append(f"GET /ws no token: {code}")
    for scope in rule.scopes:
        if (code := await first_error(suite.lacking(scope), send=True)) != "PERMISSION_DENIED":
            wrong.append(f"GET /ws without {scope}: {code}")
    await first_error(other, send=True)  # its own tenant's conversation: only its data
    return wrong


def test_every_route_refuses_what_its_rule_refuses(suite: Suite) -> None:
    before = asyncio.run(_snapshot(suite))

    async def probe_all() -> list[str]:
        wrong: list[str] = []
        base = f"http://127.0.0.1:{suite.http_port}"
        async with aiohttp.ClientSession(base_url=base) as http:
            for route in _http_routes(suite):
                wrong += await _probe_http(suite, route, HTTP_RULES[route], http)
        return wrong

    wrong = asyncio.run(probe_all())
    assert not wrong, "\n".join(wrong)
    assert asyncio.run(_snapshot(suite)) == before, "a refused call changed the victim's state"
