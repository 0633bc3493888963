"""The Kubernetes API as the operator uses it: children, status, Secrets.

kopf watches the custom resources and posts Events; the writes the
reconciler makes go through the official `kubernetes` client, in a worker
thread so the event loop keeps serving watches. Every write is a JSON merge
patch or a create, and applying the same desired object twice changes
nothing, so a reconcile may be repeated at any time.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from edgegate_common.logging import get_logger
from edgegate_operator.manifests import GROUP, VERSION

_T = TypeVar("_T")
# The client sends a dict body as a JSON Patch unless told otherwise; ours are merge patches.
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT_S = 30
KOPF_GROUP = "kopf.dev"
KOPF_VERSION = "v1"
REPORTING_INSTANCE = socket.gethostname()
log = get_logger(__name__)


def api_client(kubeconfig: Path | None = None, *, user_agent: str | None = None) -> ApiClient:
    """In a pod: its service account. Elsewhere: the kubeconfig (KUBECONFIG honoured).

    `user_agent` names this replica in the API server's audit log (and in a test's KMock).
    """
    client = _in_cluster_client() if kubeconfig is None else None
    if client is None:
        client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=None if kubeconfig is None else str(kubeconfig)
        )
    if user_agent is not None:
        client.user_agent = user_agent
    return client


def _in_cluster_client() -> ApiClient | None:
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        return None
    return ApiClient()


class Kube:
    def __init__(self, client: ApiClient) -> None:
        self._client = client
        self.apps = kubernetes.client.AppsV1Api(client)
        self.core = kubernetes.client.CoreV1Api(client)
        self.custom = kubernetes.client.CustomObjectsApi(client)

    async def _run(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        # A hung connection must not hold a resource's lock (and a worker thread) forever.
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT_S)
        # Raw responses: the client's models cost milliseconds of CPU per object, and every
        # answer used here is read as JSON (`_json`) or not at all.
        kwargs.setdefault("_preload_content", False)
        return await asyncio.to_thread(call, *args, **kwargs)

    async def _read(
        self, call: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any] | None:
        """A `read_*` call's object as a plain dict; None when it does not exist."""
        try:
            obj = await self._run(call, *args, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        data: dict[str, Any] = await asyncio.to_thread(_json, obj)
        return data

    # Deployments and Services: create, or patch what differs.

    async def apply_deployment(
        self, desired: Mapping[str, Any], current: Mapping[str, Any] | None
    ) -> None:
        """Create `desired`, or patch what differs from `current` (as the caller just read it)."""
        meta = desired["metadata"]
        if current is None:
            await self._run(self.apps.create_namespaced_deployment, meta["namespace"], desired)
        elif _differs(desired, current):
            patch = {"metadata": _meta_patch(desired), "spec": desired["spec"]}
            await self._run(
                self.apps.patch_namespaced_deployment, meta["name"], meta["namespace"], patch,
                _content_type=MERGE_PATCH,
            )  # fmt: skip

    async def apply_service(self, desired: Mapping[str, Any]) -> None:
        meta = desired["metadata"]
        current = await self._read(
            self.core.read_namespaced_service, meta["name"], meta["namespace"]
        )
        if current is None:
            await self._run(self.core.create_namespaced_service, meta["namespace"], desired)
        elif _differs(desired, current):
            patch = {"metadata": _meta_patch(desired), "spec": desired["spec"]}
            await self._run(
                self.core.patch_namespaced_service, meta["name"], meta["namespace"], patch,
                _content_type=MERGE_PATCH,
            )  # fmt: skip

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._read(self.apps.read_namespaced_deployment, name, namespace)

    async def deployments(self, namespace: str, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        """Deployments carrying all `labels` (checked here as well: selectors are a hint)."""
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        listing = await self._run(
            self.apps.list_namespaced_deployment,
            namespace,
            label_selector=selector,
            _preload_content=False,
        )
        items: list[dict[str, Any]] = (await asyncio.to_thread(_json, listing))["items"]
        return [
            d
            for d in items
            if all(d.get("metadata", {}).get("labels", {}).get(k) == v for k, v in labels.items())
        ]

    async def delete_children(self, namespace: str, name: str) -> None:
        """Delete a version's Deployment and Service; gone already is fine."""
        for call in (
            self.apps.delete_namespaced_deployment,
            self.core.delete_namespaced_service,
        ):
            try:
                await self._run(call, name, namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # Custom resources

    async def custom_object_names(
        self, plural: str, namespaces: list[str]
    ) -> list[tuple[str, str]]:
        """(namespace, name) of every `plural` object in `namespaces` (empty: all)."""
        calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = (
            [
                (self.custom.list_namespaced_custom_object, (GROUP, VERSION, ns, plural))
                for ns in namespaces
            ]
            if namespaces
            else [(self.custom.list_cluster_custom_object, (GROUP, VERSION, plural))]
        )
        listings: list[dict[str, Any]] = [
            await asyncio.to_thread(_json, await self._run(call, *args)) for call, args in calls
        ]
        return [
            (item["metadata"]["namespace"], item["metadata"]["name"])
            for listing in listings
            for item in listing.get("items", [])
        ]

    async def custom_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The resource as the API server holds it now (None: gone)."""
        return await self._read(
            self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
        )

    async def kopf_peering(
        self, name: str, namespace: str | None, *, timeout_s: float
    ) -> dict[str, Any] | None:
        """kopf's peering object: a ClusterKopfPeering, or a KopfPeering in `namespace`.

        None when it does not exist (nor its CRD: the API answers 404 to both).
        """
        if namespace is None:
            call: Callable[..., Any] = self.custom.get_cluster_custom_object
            args: tuple[str, ...] = (KOPF_GROUP, KOPF_VERSION, "clusterkopfpeerings", name)
        else:
            call = self.custom.get_namespaced_custom_object
            args = (KOPF_GROUP, KOPF_VERSION, namespace, "kopfpeerings", name)
        return await self._read(call, *args, _request_timeout=timeout_s)

    async def patch_status(
        self, plural: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> None:
        """A JSON merge patch of `status`, through the status subresource."""
        await self._run(
            self.custom.patch_namespaced_custom_object_status,
            GROUP, VERSION, namespace, plural, name, {"status": patch},
            _content_type=MERGE_PATCH,
        )  # fmt: skip

    async def post_event(
        self, body: Mapping[str, Any], *, type: str, reason: str, message: str
    ) -> None:
        """A Kubernetes Event about `body`, as `kubectl describe` and `get events` show it.

        Posted by the operator itself (not through kopf, whose helper works only inside
        its own handlers). An Event is a notice: one that cannot be posted is logged and
        the reconcile goes on.
        """
        meta = body["metadata"]
        now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body.get("apiVersion", f"{GROUP}/{VERSION}"),
                "kind": body.get("kind", "ModelDeployment"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "edgegate-operator"},
            "reportingComponent": "edgegate-operator",
            "reportingInstance": REPORTING_INSTANCE,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self._run(self.core.create_namespaced_event, meta["namespace"], event)
        except ApiException as exc:
            log.warning("event not posted", reason=reason, status=exc.status)

    async def secret_exists(self, namespace: str, name: str, key: str) -> bool:
        secret = await self._read(self.core.read_namespaced_secret, name, namespace)
        return secret is not None and key in (secret.get("data") or {}) | (
            secret.get("stringData") or {}
        )

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]


def _json(response: Any) -> Any:
    return json.loads(response.data)


def _meta_patch(desired: Mapping[str, Any]) -> dict[str, Any]:
    meta = desired["metadata"]
    return {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta}


def _differs(desired: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether any field the operator sets differs in `current` (others are the cluster's)."""
    return not _contains(current, {"metadata": _meta_patch(desired), "spec": desired["spec"]})


def _contains(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and all(
            _contains(actual.get(k), v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(_contains(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)
