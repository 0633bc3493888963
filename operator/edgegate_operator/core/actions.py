"""What the rollout state machine reads (Observed, Command) and asks for (actions).

Actions are desired state, not deltas: every decision lists the route, the
Deployments and the breaker modes as they should be, so an adapter that
applies them all, every time, converges after any crash between writing
status and writing the route. Only `RemoveDeployment` and `Event` are
one-shot, emitted on the transition that calls for them; an adapter should
also prune Deployments of the resource whose version is neither the stable
nor the canary one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from edgegate_operator.core.analysis import AnalysisResult

CommandAction = Literal["promote", "promoteFull", "abort", "retry"]
COMMAND_ANNOTATION = "edgegate.io/command"
_ACTIONS: tuple[CommandAction, ...] = ("promote", "promoteFull", "abort", "retry")


@dataclass(frozen=True, slots=True)
class BreakerObservation:
    """A version's breaker as the gateways report it (the worst replica's view)."""

    state: Literal["closed", "open", "half_open"]
    since_s: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Observed:
    """What the adapters saw since the last decision."""

    canary_ready_replicas: int = 0
    stable_ready_replicas: int = 0
    analysis: AnalysisResult | None = None  # the window `analysis_window` named, once ended
    breakers: Mapping[str, BreakerObservation] = field(default_factory=dict)
    # What keeps the resource from working that its spec cannot show: a missing Secret,
    # a version whose pods cannot start. Each becomes part of a Degraded condition.
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Command:
    """A one-shot SRE command from the `edgegate.io/command` annotation."""

    action: CommandAction | str  # anything else is refused with an Event, once
    id: str

    @classmethod
    def from_annotation(cls, text: str) -> Command:
        """Read `{"action": ..., "id": ...}`; unreadable text becomes an unknown action.

        Its id is then a digest of the text, so the Warning about it is sent once,
        not on every reconcile.
        """
        digest = "invalid-" + hashlib.sha256(text.encode()).hexdigest()[:16]
        try:
            doc = json.loads(text)
        except ValueError:
            return cls(action="(not JSON)", id=digest)
        if not isinstance(doc, dict):
            return cls(action="(not a JSON object)", id=digest)
        action, ident = doc.get("action"), doc.get("id")
        if not isinstance(ident, str) or not ident:
            return cls(action=f"{action!s} (without an id)", id=digest)
        return cls(action=str(action), id=ident)

    @property
    def known(self) -> bool:
        return self.action in _ACTIONS


@dataclass(frozen=True, slots=True)
class SetWeights:
    """The route document for NATS KV `edgegate-routes`.

    `shadow_percent`: the share of stable's requests the gateways also send to
    the canary to compare answers (only while the canary is fully ready).
    """

    stable_version: str
    stable_weight: int
    canary_version: str | None = None
    canary_weight: int = 0
    shadow_percent: int = 0

    def __post_init__(self) -> None:
        if self.stable_weight + self.canary_weight != 100 or not 0 <= self.canary_weight <= 100:
            raise ValueError(f"weights {self.stable_weight}/{self.canary_weight} do not make 100")
        if self.canary_version is None and (self.canary_weight or self.shadow_percent):
            raise ValueError("a canary weight or shadow share needs a canary version")

    def route(self) -> dict[str, object]:
        weights = {self.stable_version: self.stable_weight}
        doc: dict[str, object] = {"weights": weights}
        if self.canary_version is not None:
            weights[self.canary_version] = self.canary_weight
            if self.shadow_percent:
                doc["shadow"] = {"version": self.canary_version, "percent": self.shadow_percent}
        return doc


@dataclass(frozen=True, slots=True)
class EnsureDeployment:
    """A Deployment (and Service) for `version`, with `replicas` replicas.

    `uri` None: keep the model the Deployment runs (the spec names only the
    newest version's location, so the stable's is known only to its Deployment).
    """

    version: str
    track: Literal["stable", "canary"]
    replicas: int
    uri: str | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class RemoveDeployment:
    version: str


@dataclass(frozen=True, slots=True)
class SetBreakerModes:
    """SRE overrides for the gateways' breakers (NATS KV `edgegate-breakers`)."""

    modes: tuple[tuple[str, Literal["auto", "open", "closed"]], ...]


@dataclass(frozen=True, slots=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


Action: TypeAlias = SetWeights | EnsureDeployment | RemoveDeployment | SetBreakerModes | Event
