"""The operator's rollout logic as pure code: no Kubernetes, no NATS, no clocks.

Adapters (kopf handlers, NATS readers and writers) feed it what they see and
apply the actions it returns; everything a rollout needs to resume after a
restart lives in the resource's status.
"""

from edgegate_common.histograms import histogram_quantile
from edgegate_operator.core.actions import (
    COMMAND_ANNOTATION,
    Action,
    BreakerObservation,
    Command,
    EnsureDeployment,
    Event,
    Observed,
    RemoveDeployment,
    SetBreakerModes,
    SetWeights,
)
from edgegate_operator.core.analysis import (
    AgreementSnapshot,
    AnalysisResult,
    MetricsSnapshot,
    analyse,
)
from edgegate_operator.core.rollout import Decision, analysis_window, decide, degrade, reconcile
from edgegate_operator.core.spec import (
    AnalysisPolicy,
    Analyze,
    BreakerOverride,
    CanaryPolicy,
    ModelDeploymentSpec,
    ModelRef,
    Pause,
    SetWeight,
    SpecError,
    Step,
)
from edgegate_operator.core.status import (
    BreakerStatus,
    Condition,
    LastAnalysis,
    Phase,
    RolloutStatus,
    Verdict,
)

__all__ = [
    "COMMAND_ANNOTATION",
    "Action",
    "AgreementSnapshot",
    "AnalysisPolicy",
    "AnalysisResult",
    "Analyze",
    "BreakerObservation",
    "BreakerOverride",
    "BreakerStatus",
    "CanaryPolicy",
    "Command",
    "Condition",
    "Decision",
    "EnsureDeployment",
    "Event",
    "LastAnalysis",
    "MetricsSnapshot",
    "ModelDeploymentSpec",
    "ModelRef",
    "Observed",
    "Pause",
    "Phase",
    "RemoveDeployment",
    "RolloutStatus",
    "SetBreakerModes",
    "SetWeight",
    "SetWeights",
    "SpecError",
    "Step",
    "Verdict",
    "analyse",
    "analysis_window",
    "decide",
    "degrade",
    "histogram_quantile",
    "reconcile",
]
