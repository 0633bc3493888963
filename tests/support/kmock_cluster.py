"""A Kubernetes API for the operator's tests: KMock's emulator on a local port.

KMock keeps objects in memory and serves list, watch, get, create, patch and
delete; it runs no controllers, no garbage collection, no admission and no
schema validation. `KMockCluster` runs it in an event loop on a thread of its
own, so that synchronous tests and operator processes can talk to it over
HTTP like a cluster, and declares edgegate's CRDs (from the chart's crds/,
with their status subresource) beside the bundled built-in resources.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import itertools
import threading
import uuid
import warnings
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import jsonpatch
import kmock
import yaml
from kmock._internal import dicts
from kmock._internal.k8s_views import _parse_resource

from edgegate_operator.core.patches import merge_patch

CRD_DIR = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "edgegate" / "crds"
MODELDEPLOYMENTS = "edgegate.io/v1alpha1/modeldeployments"
TENANTQUOTAS = "edgegate.io/v1alpha1/tenantquotas"
DEPLOYMENTS = "apps/v1/deployments"
SERVICES = "v1/services"
RESOURCEQUOTAS = "v1/resourcequotas"
LIMITRANGES = "v1/limitranges"
SECRETS = "v1/secrets"
EVENTS = "v1/events"


def declare_crds(resources: Any) -> None:
    """Declare each CRD's served versions the way the API server's discovery shows them."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        names, group = crd["spec"]["names"], crd["spec"]["group"]
        for version in crd["spec"]["versions"]:
            resources[f"{group}/{version['name']}/{names['plural']}"] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names["singular"],
                namespaced=crd["spec"]["scope"] == "Namespaced",
                verbs={"create", "delete", "get", "list", "patch", "update", "watch"},
                shortnames=set(names.get("shortNames", [])),
                categories=set(names.get("categories", [])),
                subresources=set(version.get("subresources", {})),
            )


SERVED_KEPT = 200_000
KMOCK_KEPT = 256


class TestFailed(kmock.KubernetesError):
    """422, as the API server answers a JSON patch whose `test` operation failed.

    kopf tests metadata.resourceVersion in every JSON patch it sends, and on a 422 retries
    on its next cycle; any other status would be an unexpected error (and a slowdown).
    """


class ClusterEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """KMock plus the bookkeeping an API server does on every write.

    Creating names an object from its generateName and sets metadata.uid,
    creationTimestamp, generation and resourceVersion; each write bumps
    resourceVersion, and generation when the spec changed. For a resource
    with a status subresource, a write to the object keeps the stored status
    and a write to `/status` changes nothing but status, so that a
    controller writing status the wrong way is caught as it would be on a
    cluster. KMock itself merges whatever it is sent.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)
        self._writes = asyncio.Lock()
        self.served: collections.deque[Any] = collections.deque(maxlen=SERVED_KEPT)

    async def _handle(self, request: Any) -> Any:
        # KMock matches each request against its reactions by scanning every request it has
        # logged: over a long test that grows quadratic and slows the API to seconds a call.
        # Its log keeps the last few (the ones in flight); ours (`served`) keeps the history.
        self.served.append(request)
        del self._requests[:-KMOCK_KEPT]
        if request.resource is None or request.action not in (
            kmock.action.CREATE,
            kmock.action.UPDATE,
        ):
            return await super()._handle(request)
        async with self._writes:
            try:
                data = self._as_a_cluster_would(request)
            except jsonpatch.JsonPatchTestFailed as exc:
                return await self._render_error(
                    TestFailed(
                        status=422, reason="Invalid", message=f"the patch's test failed: {exc}"
                    )
                )
            # KMock matches reactions by the request object it logged, so the body is
            # replaced in place (Request is a frozen attrs class).
            object.__setattr__(request, "data", data)
            return await super()._handle(request)

    def _as_a_cluster_would(self, request: Any) -> Any:
        """The body to store: a CREATE's object, or a merge patch from old to new."""
        if request.action == kmock.action.CREATE:
            data = copy.deepcopy(request.data)
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
            meta["resourceVersion"] = str(next(self._versions))
            return data
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return request.data  # KMock answers 404
        old = copy.deepcopy(self.objects[key].raw)
        new = dict(dicts.patch_dict(copy.deepcopy(old), request.data))
        info = self.resources.get(request.resource) if request.resource in self.resources else None
        if request.subresource == "status":
            new = {**old, "status": new.get("status")}
        elif info is not None and "status" in info.subresources:
            new["status"] = old.get("status")
        meta = new["metadata"] = dict(new.get("metadata") or {})
        for kept in ("uid", "creationTimestamp"):
            if kept in old.get("metadata", {}):
                meta[kept] = old["metadata"][kept]
        meta["generation"] = old.get("metadata", {}).get("generation", 1) + int(
            new.get("spec") != old.get("spec")
        )
        meta["resourceVersion"] = str(next(self._versions))
        return merge_patch(old, new)


def _now() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KMockCluster:
    """KMock on 127.0.0.1:<port>, in a background thread; `stop()` ends it."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kmock", daemon=True)
        self._stack = contextlib.AsyncExitStack()
        self.api: ClusterEmulator
        self.url = ""

    def start(self) -> KMockCluster:
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        self.api = await self._stack.enter_async_context(ClusterEmulator())
        server = await self._stack.enter_async_context(kmock.Server(self.api))
        with warnings.catch_warnings():  # kmock reads its bundle with a deprecated importlib call
            warnings.simplefilter("ignore", DeprecationWarning)
            self.api.resources.load_bundled()
        declare_crds(self.api.resources)
        self.url = str(server.url).rstrip("/")

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._stack.aclose(), timeout_s=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _call(self, coro: Any, *, timeout_s: float = 30) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=timeout_s)

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "sre", "user": {"token": "kmock-accepts-any-token"}}],
            "contexts": [
                {
                    "name": "kmock",
                    "context": {"cluster": "kmock", "user": "sre", "namespace": namespace},
                }
            ],
            "current-context": "kmock",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # Objects, read and written the way a test (or a controller it plays) would.

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        found = [
            obj
            for obj in self.list(resource, namespace)
            if obj.get("metadata", {}).get("name") == name
        ]
        return found[0] if found else None

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        async def read() -> list[dict[str, Any]]:
            found = []
            for (res, ns, _), obj in self.api.objects.items():
                if obj.deleted or res != _parse_resource(resource):
                    continue
                if namespace is None or ns == namespace:
                    found.append(dict(obj.raw))
            return found

        result: list[dict[str, Any]] = self._call(read())
        return result

    def requests(self) -> Iterator[Any]:
        """Every request KMock served so far (kmock.Request: method, resource, subresource…)."""
        return iter(list(self.api.served))


def status_of(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict((obj or {}).get("status") or {})
