"""One loaded model version: its sessions, its text pipeline, its batcher, its counters.

`build_version` does the slow part (ONNX Runtime sessions, warm-up) on a
worker thread; `ModelVersion.start` then attaches the batcher in the event
loop. A version that built is ready to serve: warm-up has run on every instance.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edgegate_common.errors import InvalidArgument
from edgegate_common.logging import get_logger
from edgegate_inference.adapters.onnx_runtime import OnnxSession, zeros_or_random
from edgegate_inference.core.batcher import DynamicBatcher
from edgegate_inference.core.spec import MODEL_FILE, ModelSpec, TensorSpec
from edgegate_inference.core.stats import VersionStats
from edgegate_inference.core.text import TextEncoder
from edgegate_inference.core.types import Array, InferRequest, InferResponse
from edgegate_inference.core.validation import check_inputs, check_outputs

log = get_logger(__name__)

Runner = Callable[[Mapping[str, Array]], dict[str, Array]]


@dataclass(eq=False)
class ModelVersion:
    name: str
    version: str
    path: Path
    spec: ModelSpec  # inputs and outputs filled in from the model where the config left them out
    providers: list[str]
    runners: list[Runner]
    fingerprint: str
    stats: VersionStats = field(default_factory=VersionStats)
    loaded_at_s: float = field(default_factory=time.time)
    batcher: DynamicBatcher | None = None

    def start(self) -> None:
        """Attach the batcher (inside the running event loop)."""
        self.batcher = DynamicBatcher(
            name=f"{self.name}/{self.version}",
            runners=self.runners,
            max_batch_size=self.spec.max_batch_size,
            config=self.spec.dynamic_batching,
            stats=self.stats,
        )

    async def infer(self, request: InferRequest, *, sent: Mapping[str, str]) -> InferResponse:
        """Validate, queue, and answer one request; `sent` = each input's datatype."""
        assert self.batcher is not None, "start() attaches the batcher"
        size, key = check_inputs(
            model=self.name,
            declared=self.spec.inputs,
            inputs=request.inputs,
            datatypes=sent,
            max_batch_size=self.spec.max_batch_size,
            pads_variable_dims=self.spec.text is not None,
        )
        check_outputs(model=self.name, declared=self.spec.outputs, requested=request.outputs)
        served = await self.batcher.serve(
            request.inputs,
            size=size,
            key=key,
            priority=request.priority,
            timeout_us=request.timeout_us,
        )
        outputs = served.outputs
        if request.outputs:
            outputs = {name: outputs[name] for name in request.outputs}
        return InferResponse(
            model=self.name,
            version=self.version,
            outputs=outputs,
            id=request.id,
            datatypes=self.output_datatypes,
            queue_s=served.queue_s,
            compute_s=served.compute_s,
        )

    @functools.cached_property
    def output_datatypes(self) -> dict[str, str]:
        return {t.name: t.datatype for t in self.spec.outputs}

    def release(self) -> None:
        """Drop the sessions of a version that never started serving."""
        self.runners.clear()

    async def close(self, *, drain_timeout_s: float) -> None:
        if self.batcher is not None:
            await self.batcher.close(drain_timeout_s=drain_timeout_s)


def build_version(
    *, name: str, version: str, model_dir: Path, spec: ModelSpec, fingerprint: str
) -> ModelVersion:
    """Create the sessions and warm them up (blocking: run it on a thread)."""
    path = model_dir / version / MODEL_FILE
    started = time.perf_counter()
    sessions = [
        OnnxSession(
            path,
            providers=spec.execution_providers,
            intra_op_threads=intra_op_threads(spec.instances.intra_op_threads, instance=i),
            inter_op_threads=spec.instances.inter_op_threads,
            allow_spinning=spec.instances.allow_spinning,
        )
        for i in range(spec.instances.count)
    ]
    resolved, make_runner = _resolve(spec, sessions[0], model_dir=model_dir, version=version)
    runners = [make_runner(s) for s in sessions]
    for runner in runners:
        _warm_up(resolved, runner)
    log.info(
        "model version ready",
        model=name,
        version=version,
        providers=sessions[0].providers,
        instances=len(sessions),
        load_s=round(time.perf_counter() - started, 3),
    )
    return ModelVersion(
        name=name,
        version=version,
        path=path,
        spec=resolved,
        providers=sessions[0].providers,
        runners=runners,
        fingerprint=fingerprint,
    )


def intra_op_threads(configured: int, *, instance: int) -> int:
    """Threads for one instance's session; 0 in the config means "choose".

    Chosen: the first instance gets ONNX Runtime's default (every core), the
    others one thread each. The batcher hands work to the lowest free
    instance, so a lone request runs on all cores (low latency), while under
    load the instances run side by side on one core each instead of fighting
    over shared cores, where a preempted worker stalls every parallel step
    (on 2 cores: up to +15% throughput at 64 clients in short trials, with a
    longer tail; see docs/BENCHMARKS.md).
    """
    if configured > 0:
        return configured
    return 0 if instance == 0 else 1


def _resolve(
    spec: ModelSpec, session: OnnxSession, *, model_dir: Path, version: str
) -> tuple[ModelSpec, Callable[[OnnxSession], Runner]]:
    """Fill in the spec from the model, check they agree, and say how to run it."""
    batched = spec.max_batch_size > 0
    model_inputs = session.inputs(batched=batched)
    model_outputs = session.outputs(batched=batched)
    if spec.text is not None:
        return _resolve_text(spec, model_inputs, model_outputs, model_dir / version, model_dir)
    inputs = spec.inputs or tuple(model_inputs)
    outputs = spec.outputs or tuple(model_outputs)
    _agree("input", inputs, model_inputs)
    _agree("output", outputs, model_outputs)
    resolved = spec.model_copy(update={"inputs": inputs, "outputs": outputs})
    return resolved, lambda s: s.run


def _resolve_text(
    spec: ModelSpec,
    model_inputs: list[TensorSpec],
    model_outputs: list[TensorSpec],
    version_dir: Path,
    model_dir: Path,
) -> tuple[ModelSpec, Callable[[OnnxSession], Runner]]:
    text = spec.text
    assert text is not None
    if spec.max_batch_size == 0:
        raise InvalidArgument(f"model {spec.name!r}: a text pipeline needs max_batch_size > 0")
    tokenizer = version_dir / text.tokenizer
    if not tokenizer.is_file():
        tokenizer = model_dir / text.tokenizer
    encoder = TextEncoder(
        text, tokenizer_path=tokenizer, model_inputs=[t.name for t in model_inputs]
    )
    token_output = text.token_output or model_outputs[0].name
    hidden = next((t.dims[-1] for t in model_outputs if t.name == token_output), None)
    if hidden is None:
        raise InvalidArgument(f"model {spec.name!r} has no output {token_output!r} to pool")
    dims = (hidden,) if text.pooling != "none" else (-1, hidden)
    resolved = spec.model_copy(
        update={
            "inputs": (TensorSpec(name=text.input, datatype="BYTES", dims=(1,)),),
            "outputs": (TensorSpec(name=text.output, datatype="FP32", dims=dims),),
        }
    )

    def make_runner(session: OnnxSession) -> Runner:
        def run(inputs: Mapping[str, Array]) -> dict[str, Array]:
            feeds = encoder.tokenize(list(inputs[text.input].reshape(-1)))
            return dict(encoder.outputs(session.run(feeds), feeds))

        return run

    return resolved, make_runner


def _agree(kind: str, declared: tuple[TensorSpec, ...], actual: list[TensorSpec]) -> None:
    by_name = {t.name: t for t in actual}
    for t in declared:
        found = by_name.get(t.name)
        if found is None:
            raise InvalidArgument(
                f"config names {kind} {t.name!r}, the model has {sorted(by_name)}"
            )
        if found.datatype != t.datatype:
            raise InvalidArgument(
                f"config says {kind} {t.name!r} is {t.datatype}, the model says {found.datatype}"
            )


def _warm_up(spec: ModelSpec, runner: Runner) -> None:
    for warmup in spec.warmup:
        batch = [warmup.batch_size] if spec.max_batch_size > 0 else []
        inputs: dict[str, Array] = {}
        for t in spec.inputs:
            fixed = warmup.dims.get(t.name, tuple(1 if d == -1 else d for d in t.dims))
            inputs[t.name] = zeros_or_random(t, [*batch, *fixed], random=warmup.data == "random")
        for _ in range(warmup.count):
            runner(inputs)
