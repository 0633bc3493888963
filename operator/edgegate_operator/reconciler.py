"""One ModelDeployment, reconciled: observe, decide (core), apply, write status.

Observe: the ready replicas of the stable and canary Deployments (and why
a version's pods cannot start), the analysis window the current step
waits for (judged from the observations stream once it has ended), the
gateways' breakers, and the fallback Secret.

Apply, route first: the weights (and shadow share) to `edgegate-routes`,
then the Deployments and Services, breaker modes and policy to
`edgegate-breakers`, Events, and last the status. Every action is desired
state, so a crash anywhere in between is repaired by the next reconcile.

Status writes go through the `/status` subresource, only when something
changed; a change confined to fields that mirror observations (ready
replica counts, breaker states) at most once per `min_interval_s` (a
message quoting those counts is a change of its own and goes at once).
Deployments the decision no longer serves are deleted only after the
status is written, so that a restarted operator never routes to a version
already gone. The decided status, rate limit or not, is mirrored into NATS
KV `edgegate-rollouts` for the console (`rollouts`).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException

from edgegate_common import subjects
from edgegate_common.logging import get_logger
from edgegate_operator import manifests
from edgegate_operator.adapters.bus import OperatorBus
from edgegate_operator.adapters.kube import Kube
from edgegate_operator.core import (
    AnalysisResult,
    Decision,
    EnsureDeployment,
    Event,
    ModelDeploymentSpec,
    Observed,
    RemoveDeployment,
    RolloutStatus,
    SetBreakerModes,
    SetWeights,
    SpecError,
    analyse,
    analysis_window,
    reconcile,
)
from edgegate_operator.core.patches import merge_patch
from edgegate_operator.metrics import OperatorMetrics
from edgegate_operator.rollouts import RolloutMirror

log = get_logger(__name__)

PostEvent = Callable[[Mapping[str, Any], Event], Awaitable[None]]
# Status keys that only mirror observations: written at most once per min_interval_s.
MIRRORS = frozenset({"canaryReadyReplicas", "stableReadyReplicas", "breakers", "breakerSummary"})


@dataclass
class StatusWriter:
    """Writes a resource's status when it changed; mirror-only changes are rate-limited."""

    kube: Kube
    min_interval_s: float = 2.0
    _last_write: dict[tuple[str, str], float] = field(default_factory=dict)

    async def write(
        self, namespace: str, name: str, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> bool:
        patch = merge_patch(old, new)
        if not patch:
            return False
        key, now = (namespace, name), time.monotonic()
        if set(patch) <= MIRRORS and now - self._last_write.get(key, 0.0) < self.min_interval_s:
            return False
        await self.kube.patch_status(manifests.MODELDEPLOYMENTS, namespace, name, patch)
        self._last_write[key] = now
        return True

    def forget(self, namespace: str, name: str) -> None:
        self._last_write.pop((namespace, name), None)


@dataclass
class Reconciler:
    kube: Kube
    bus: OperatorBus
    workload: manifests.Workload
    status: StatusWriter
    post_event: PostEvent
    metrics: OperatorMetrics
    # How long after an analysis window ends to wait for its last snapshots to arrive.
    analysis_grace_s: float = 1.0
    clock: Callable[[], float] = time.time
    # Writes the API server refused last time, per resource: shown as Degraded next time.
    _refused: dict[tuple[str, str], str] = field(default_factory=dict)
    _locks: defaultdict[tuple[str, str], asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    mirror: RolloutMirror = field(init=False)

    def __post_init__(self) -> None:
        self.mirror = RolloutMirror(self.bus)

    async def reconcile_latest(self, namespace: str, name: str) -> Decision | None:
        """Reconcile the resource as the API server holds it now; None when it is gone.

        One resource at a time (a watch event and the resync loop may both ask), and read
        again inside that lock: a body handed over earlier may predate the status the
        previous reconcile wrote, and deciding on it would repeat Events.
        """
        async with self._locks[(namespace, name)]:
            body = await self.kube.custom_object(manifests.MODELDEPLOYMENTS, namespace, name)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None
            return await self.reconcile(body)

    async def reconcile(self, body: Mapping[str, Any]) -> Decision:
        started = time.perf_counter()
        try:
            return await self._reconcile(body)
        except Exception:
            self.metrics.reconcile_errors.labels("modeldeployment").inc()
            raise
        finally:
            self.metrics.reconcile_seconds.labels("modeldeployment").observe(
                time.perf_counter() - started
            )

    async def _reconcile(self, body: Mapping[str, Any]) -> Decision:
        meta, spec = body["metadata"], body.get("spec") or {}
        old_status = dict(body.get("status") or {})
        now_s = self.clock()
        observed, seen, parsed = await self._observe(body, old_status, now_s)
        decision = reconcile(
            spec=spec,
            status=old_status,
            observed=observed,
            now_s=now_s,
            generation=int(meta.get("generation") or 0),
            annotations=meta.get("annotations") or {},
        )
        key = (meta["namespace"], meta["name"])
        try:
            await self._apply(body, decision, seen)
        except ApiException as exc:
            if exc.status is None or exc.status >= 500 or exc.status in (404, 409):
                raise  # the API's trouble, or a race: the next reconcile retries
            # The API server refuses what we asked (a 422, a 403 from RBAC): say so on the
            # resource, through the next decision's Degraded condition, instead of retrying
            # in silence.
            self._refused[key] = f"the API server refused a write: {exc.status} {exc.reason}"
            log.error("write refused", resource="/".join(key), status=exc.status, body=exc.body)
            return decision
        self._refused.pop(key, None)
        new_status = decision.status.to_dict(nulls=True)
        await self.status.write(meta["namespace"], meta["name"], old_status, new_status)
        await self.mirror.write(body, decision.status, spec=parsed, now_s=now_s)
        await self._remove(body, decision)
        if decision.status.last_analysis != _last_analysis(old_status):
            verdict = decision.status.last_analysis
            if verdict is not None:
                self.metrics.verdicts.labels(verdict.verdict.value).inc()
        self.metrics.observe_phase(meta["namespace"], meta["name"], decision.status.phase.value)
        return decision

    # -- observe ---------------------------------------------------------

    async def _observe(
        self, body: Mapping[str, Any], raw_status: Mapping[str, Any], now_s: float
    ) -> tuple[Observed, dict[str, dict[str, Any] | None], ModelDeploymentSpec | None]:
        """What the decision needs, the Deployments read for it (by name), which applying
        the decision then compares with instead of reading them again, and the spec as
        read (None: refused), which the mirror describes."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            status = RolloutStatus.from_dict(raw_status)
        except ValueError:
            status = RolloutStatus()
        problems: list[str] = []
        ready: dict[str, int] = {}
        seen: dict[str, dict[str, Any] | None] = {}
        for version in filter(None, (status.stable_version, status.canary_version)):
            child = manifests.child_name(name, version)
            deployment = seen[child] = await self.kube.deployment(namespace, child)
            ready[version] = _ready_replicas(deployment)
            failure = _failure(deployment)
            if failure:
                problems.append(f"version {version}: {failure}")
        problems.extend(await self._secret_problems(body))
        if (namespace, name) in self._refused:
            problems.append(self._refused[(namespace, name)])
        analysis = None
        model = str((body.get("spec") or {}).get("model", {}).get("name", ""))
        try:
            spec = ModelDeploymentSpec.from_dict(body.get("spec") or {})
        except SpecError:
            spec = None
        if spec is not None:
            analysis = self._analysis(spec, status, now_s)
        observed = Observed(
            canary_ready_replicas=ready.get(status.canary_version, 0),
            stable_ready_replicas=ready.get(status.stable_version, 0),
            analysis=analysis,
            breakers=self.bus.observations.breakers(model, now_s=now_s) if model else {},
            problems=tuple(problems),
        )
        return observed, seen, spec

    def _analysis(
        self, spec: ModelDeploymentSpec, status: RolloutStatus, now_s: float
    ) -> AnalysisResult | None:
        window = analysis_window(spec, status)
        if window is None or now_s < window[1] + self.analysis_grace_s:
            return None
        start_s, end_s = window
        model = spec.model.name
        return analyse(
            self.bus.observations.metrics(model),
            version=status.canary_version,
            policy=spec.canary.analysis,
            start_s=start_s,
            end_s=end_s,
            agreements=self.bus.observations.agreements(model),
            baseline=status.stable_version or None,
        )

    async def _secret_problems(self, body: Mapping[str, Any]) -> list[str]:
        ref = ((body.get("spec") or {}).get("fallback") or {}).get("apiKeySecretRef")
        if not isinstance(ref, Mapping) or not ref.get("name"):
            return []
        namespace = body["metadata"]["namespace"]
        name, key = str(ref["name"]), str(ref.get("key", "api-key"))
        try:
            if await self.kube.secret_exists(namespace, name, key):
                return []
        except ApiException as exc:
            if exc.status != 403:
                raise
            return [f"the operator may not read Secret {namespace}/{name} (RBAC: get secrets)"]
        return [f"the fallback's Secret {namespace}/{name} (key {key!r}) does not exist"]

    # -- apply -----------------------------------------------------------

    async def _apply(
        self,
        body: Mapping[str, Any],
        decision: Decision,
        seen: Mapping[str, dict[str, Any] | None],
    ) -> None:
        """Route first, then the Deployments and breaker documents, then Events."""
        spec = body.get("spec") or {}
        model = str(spec.get("model", {}).get("name", ""))
        route = decision.route
        if route is not None and model:
            await self._write_route(model, route)
        for action in decision.actions:
            if isinstance(action, EnsureDeployment):
                await self._ensure(body, action, seen)
            elif isinstance(action, SetBreakerModes) and model:
                doc = _breaker_doc(spec, action)
                await self.bus.put(subjects.KV_BREAKERS, subjects.ident(model), doc)
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        for event in decision.events:
            await self.post_event(body, event)
            log.info(
                "event", resource=f"{namespace}/{name}", type=event.type, reason=event.reason,
                message=event.message,
            )  # fmt: skip

    async def _remove(self, body: Mapping[str, Any], decision: Decision) -> None:
        """Delete what the decision no longer serves: only once its status is written, so
        that an operator killed in between never routes to a version already gone."""
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        keep = set()
        for action in decision.actions:
            if isinstance(action, EnsureDeployment):
                keep.add(manifests.child_name(name, action.version))
            elif isinstance(action, RemoveDeployment):
                await self.kube.delete_children(
                    namespace, manifests.child_name(name, action.version)
                )
        if keep:
            await self._prune(namespace, name, keep)

    async def _write_route(self, model: str, route: SetWeights) -> None:
        if await self.bus.put(subjects.KV_ROUTES, subjects.ident(model), route.route()):
            log.info("route written", model=model, route=route.route())

    async def _ensure(
        self,
        body: Mapping[str, Any],
        action: EnsureDeployment,
        seen: Mapping[str, dict[str, Any] | None],
    ) -> None:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        child = manifests.child_name(name, action.version)
        current = seen[child] if child in seen else await self.kube.deployment(namespace, child)
        uri, sha256 = action.uri, action.sha256
        if uri is None:  # keep the model the Deployment runs
            if current is None:
                log.warning("no model location for a missing Deployment", version=action.version)
                return
            annotations = current["metadata"].get("annotations") or {}
            uri = annotations.get(manifests.ANNOTATION_URI, "")
            sha256 = annotations.get(manifests.ANNOTATION_SHA256)
        deployment = manifests.inference_deployment(
            body, version=action.version, track=action.track, replicas=action.replicas,
            uri=uri, sha256=sha256, workload=self.workload,
        )  # fmt: skip
        await self.kube.apply_deployment(deployment, current)
        await self.kube.apply_service(manifests.inference_service(deployment))

    async def _prune(self, namespace: str, name: str, keep: set[str]) -> None:
        """Delete this resource's Deployments of versions it no longer serves."""
        for deployment in await self.kube.deployments(namespace, manifests.owner_selector(name)):
            child = deployment["metadata"]["name"]
            if child not in keep:
                log.info("removing a version no longer served", deployment=child)
                await self.kube.delete_children(namespace, child)

    async def forget(self, body: Mapping[str, Any]) -> None:
        """The resource is gone: its route, breaker and rollout documents go with it.

        Its Deployments and Services are the garbage collector's (owner references); they
        are deleted here as well, for clusters (and tests) without one. Under the
        resource's lock, so that a reconcile in flight cannot write after this.
        """
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        async with self._locks[key]:
            await self._forget(body)
        self._locks.pop(key, None)

    async def _forget(self, body: Mapping[str, Any]) -> None:
        model = str((body.get("spec") or {}).get("model", {}).get("name", ""))
        if model:
            await self.bus.delete(subjects.KV_ROUTES, subjects.ident(model))
            await self.bus.delete(subjects.KV_BREAKERS, subjects.ident(model))
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        await self.mirror.remove(namespace, name)
        for deployment in await self.kube.deployments(namespace, manifests.owner_selector(name)):
            await self.kube.delete_children(namespace, deployment["metadata"]["name"])
        self.status.forget(namespace, name)
        self.metrics.forget(namespace, name)


def _last_analysis(raw_status: Mapping[str, Any]) -> Any:
    try:
        return RolloutStatus.from_dict(raw_status).last_analysis
    except ValueError:
        return None


def _ready_replicas(deployment: Mapping[str, Any] | None) -> int:
    if deployment is None:
        return 0
    status = deployment.get("status") or {}
    return int(status.get("readyReplicas") or 0)


def _failure(deployment: Mapping[str, Any] | None) -> str:
    """The message of a Deployment condition that says its pods cannot start."""
    if deployment is None:
        return ""
    for condition in (deployment.get("status") or {}).get("conditions") or []:
        failed = condition.get("type") == "ReplicaFailure" and condition.get("status") == "True"
        stuck = condition.get("type") == "Progressing" and condition.get("status") == "False"
        if failed or stuck:
            return str(condition.get("message") or condition.get("reason") or "pods cannot start")
    return ""


def _breaker_doc(spec: Mapping[str, Any], action: SetBreakerModes) -> dict[str, Any]:
    fallback = dict(spec.get("fallback") or {})
    doc: dict[str, Any] = {"modes": dict(action.modes)}
    if "breaker" in fallback:
        doc["breaker"] = fallback.pop("breaker")
    if fallback:
        doc["fallback"] = fallback
    return doc
