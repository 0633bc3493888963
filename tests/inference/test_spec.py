"""Model configuration: `config.yaml`, Triton's `config.pbtxt`, and the way back."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

from edgegate_common.errors import InvalidArgument
from edgegate_inference.core import config_files
from edgegate_inference.core.spec import (
    DEFAULT_PROVIDERS,
    DynamicBatching,
    ExecutionProvider,
    Instances,
    ModelSpec,
    QueuePolicy,
    TensorSpec,
    TextPipeline,
    VersionPolicy,
    Warmup,
    parse_yaml,
    valid_model_name,
)
from edgegate_inference.core.triton_config import parse_pbtxt, to_model_config
from edgegate_protos.oip import model_config_pb2 as mc

FULL_YAML = """
max_batch_size: 64
inputs:
  - {name: input_ids, datatype: INT64, dims: [-1]}
  - {name: TEXT, datatype: BYTES, dims: [1]}
outputs:
  - {name: embedding, datatype: FP32, dims: [384]}
dynamic_batching:
  max_queue_delay_us: 2000
  preferred_batch_sizes: [16, 32]
  priority_levels: 2
  default_priority_level: 2
  queue_policy: {max_queue_size: 512, default_timeout_us: 0, timeout_action: reject}
  priority_queue_policy:
    1: {max_queue_size: 8, default_timeout_us: 5000, timeout_action: delay}
  preserve_ordering: true
instances: {count: 2, intra_op_threads: 2}
execution_providers:
  - {name: tensorrt, options: {trt_fp16_enable: true, trt_engine_cache_path: /cache}}
  - {name: cuda, options: {device_id: 0}}
  - {name: cpu}
text: {tokenizer: tokenizer.json, max_length: 256, pooling: mean, normalize: true}
warmup: [{batch_size: 1}, {batch_size: 32, data: zero, dims: {input_ids: [16]}}]
version_policy: {latest: 1}
"""


def yaml_spec(text: str, *, name: str = "m") -> ModelSpec:
    return parse_yaml(text, source="models/m/config.yaml", name=name)


def test_a_full_yaml_config_parses_to_the_documented_spec() -> None:
    spec = yaml_spec(FULL_YAML, name="minilm")
    assert spec.name == "minilm"  # the folder name
    assert spec.max_batch_size == 64
    assert spec.inputs == (
        TensorSpec(name="input_ids", datatype="INT64", dims=(-1,)),
        TensorSpec(name="TEXT", datatype="BYTES", dims=(1,)),
    )
    assert spec.outputs == (TensorSpec(name="embedding", datatype="FP32", dims=(384,)),)
    assert spec.dynamic_batching == DynamicBatching(
        max_queue_delay_us=2000,
        preferred_batch_sizes=(16, 32),
        priority_levels=2,
        default_priority_level=2,
        queue_policy=QueuePolicy(max_queue_size=512, default_timeout_us=0, timeout_action="reject"),
        priority_queue_policy={
            1: QueuePolicy(max_queue_size=8, default_timeout_us=5000, timeout_action="delay")
        },
        preserve_ordering=True,
    )
    assert spec.instances == Instances(count=2, intra_op_threads=2)
    # YAML's `true` and `0` become the strings ONNX Runtime takes as options.
    assert spec.execution_providers == (
        ExecutionProvider(
            name="tensorrt",
            options={"trt_fp16_enable": "True", "trt_engine_cache_path": "/cache"},
        ),
        ExecutionProvider(name="cuda", options={"device_id": "0"}),
        ExecutionProvider(name="cpu"),
    )
    assert spec.text == TextPipeline(max_length=256, pooling="mean", normalize=True)
    assert spec.warmup == (
        Warmup(batch_size=1),
        Warmup(batch_size=32, data="zero", dims={"input_ids": (16,)}),
    )
    assert spec.version_policy == VersionPolicy(latest=1)


def test_an_empty_config_takes_the_defaults() -> None:
    spec = yaml_spec("", name="bare")
    assert spec == ModelSpec(name="bare")
    assert spec.max_batch_size == 0
    assert spec.dynamic_batching is None  # batching off
    assert spec.inputs == ()  # read from the ONNX model
    assert spec.instances == Instances(count=1, intra_op_threads=0, inter_op_threads=0)
    assert spec.execution_providers == DEFAULT_PROVIDERS
    assert [p.name for p in spec.execution_providers] == ["tensorrt", "cuda", "cpu"]
    assert spec.version_policy.select([1, 2, 3]) == [3]


def test_dynamic_batching_defaults_follow_triton() -> None:
    batching = yaml_spec("max_batch_size: 8\ndynamic_batching: {}").dynamic_batching
    assert batching is not None
    assert batching.max_queue_delay_us == 0
    assert batching.preferred_batch_sizes == ()
    assert batching.levels == 1
    assert batching.default_level == 1
    # Unlike Triton, a 2 s queue timeout: overload is refused at once (core/admission.py).
    assert batching.queue_policy == QueuePolicy(
        max_queue_size=0, default_timeout_us=2_000_000, timeout_action="reject"
    )
    assert not batching.preserve_ordering


def test_priority_levels_default_to_the_middle_level_and_fall_back_to_the_queue_policy() -> None:
    batching = DynamicBatching(
        priority_levels=3,
        queue_policy=QueuePolicy(max_queue_size=10),
        priority_queue_policy={1: QueuePolicy(max_queue_size=2)},
    )
    assert batching.default_level == 2
    assert batching.policy(1).max_queue_size == 2
    assert batching.policy(3).max_queue_size == 10


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("inputs: [{name: x, datatype: FP33, dims: [1]}]", ["inputs.0.datatype", "FP33"]),
        ("inputs: [{name: x, datatype: FP32, dims: [0]}]", ["inputs.0.dims"]),
        (
            "max_batch_size: 8\ndynamic_batching: {preferred_batch_sizes: [4, 16]}",
            ["preferred_batch_sizes", "[16]", "max_batch_size"],
        ),
        ("dynamic_batching: {max_queue_delay_us: 100}", ["dynamic_batching", "max_batch_size"]),
        ("max_batch_sizes: 8", ["max_batch_sizes", "Extra inputs are not permitted"]),
        ("max_batch_size: 8\ndynamic_batching: {max_queue_delay: 5}", ["max_queue_delay"]),
        ("max_batch_size: -1", ["max_batch_size"]),
        (
            "max_batch_size: 8\ndynamic_batching: {priority_levels: 2, default_priority_level: 3}",
            ["default_priority_level 3"],
        ),
        (
            "max_batch_size: 8\n"
            "dynamic_batching: {priority_levels: 2, priority_queue_policy: {3: {}}}",
            ["priority_queue_policy", "[3]"],
        ),
        (
            "max_batch_size: 8\ndynamic_batching: {queue_policy: {timeout_action: drop}}",
            ["dynamic_batching.queue_policy.timeout_action"],
        ),
        ("execution_providers: [{name: rocm}]", ["execution_providers.0.name"]),
        ("execution_providers: []", ["execution_providers may not be empty"]),
        ("instances: {count: 0}", ["instances.count"]),
        ("text: {pooling: max}", ["text.pooling"]),
        ("version_policy: {latest: 2, all: true}", ["version_policy", "one of"]),
        ("max_batch_size: [", ["not valid YAML"]),
        ("- 1\n- 2", ["expected a mapping"]),
    ],
)
def test_a_bad_config_is_invalid_and_says_where(text: str, names: list[str]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        yaml_spec(text)
    message = caught.value.message
    assert message.startswith("models/m/config.yaml: ")
    for name in names:
        assert name in message


@pytest.mark.parametrize(
    ("policy", "available", "served"),
    [
        (VersionPolicy(), [3, 1, 2], [3]),
        (VersionPolicy(latest=2), [1, 2, 3], [2, 3]),
        (VersionPolicy(latest=5), [1, 2], [1, 2]),
        (VersionPolicy(all=True), [2, 1, 2], [1, 2]),
        (VersionPolicy(specific=(1, 3, 9)), [1, 2, 3], [1, 3]),
        (VersionPolicy(specific=(9,)), [1, 2], []),
        (VersionPolicy(), [], []),
    ],
)
def test_version_policy_selects(
    policy: VersionPolicy, available: list[int], served: list[int]
) -> None:
    assert policy.select(available) == served


@pytest.mark.parametrize(
    "name", ["resnet50", "all-MiniLM-L6-v2", "bert_base.onnx", "_x", "A" * 128]
)
def test_plain_folder_names_are_valid_model_names(name: str) -> None:
    assert valid_model_name(name)


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "a/b", "../etc", "a\\b", "-rf", "a b", "a\n", "A" * 129]
)
def test_path_tricks_are_not_model_names(name: str) -> None:
    assert not valid_model_name(name)


# -- Triton's config.pbtxt ------------------------------------------------------

TRITON_PBTXT = """
name: "text_encoder"
platform: "onnxruntime_onnx"
max_batch_size: 32
input [
  { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] }
]
output [
  { name: "embedding" data_type: TYPE_FP32 dims: [ 384 ] }
]
dynamic_batching {
  preferred_batch_size: [ 8, 16 ]
  max_queue_delay_microseconds: 500
  preserve_ordering: true
  priority_levels: 3
  default_priority_level: 2
  default_queue_policy {
    max_queue_size: 100
    default_timeout_microseconds: 20000
    allow_timeout_override: true
    timeout_action: DELAY
  }
  priority_queue_policy {
    key: 1
    value { max_queue_size: 10 timeout_action: REJECT }
  }
}
instance_group [ { count: 2 kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value { string_value: "4" } }
parameters { key: "inter_op_thread_count" value { string_value: "1" } }
parameters { key: "edgegate.text.pooling" value { string_value: "cls" } }
parameters { key: "edgegate.text.max_length" value { string_value: "128" } }
model_warmup [
  {
    name: "zeros"
    batch_size: 4
    count: 2
    inputs { key: "input_ids" value { data_type: TYPE_INT64 dims: [ 7 ] zero_data: true } }
  }
]
version_policy { specific { versions: [ 1, 3 ] } }
optimization {
  execution_accelerators {
    gpu_execution_accelerator [
      { name: "tensorrt" parameters { key: "precision_mode" value: "FP16" } }
    ]
  }
}
"""


def pbtxt_spec(text: str, *, name: str = "folder") -> ModelSpec:
    return parse_pbtxt(text, source="models/folder/config.pbtxt", name=name)


def test_a_triton_config_pbtxt_parses_to_the_same_spec() -> None:
    spec = pbtxt_spec(TRITON_PBTXT)
    assert spec == ModelSpec(
        name="text_encoder",
        max_batch_size=32,
        inputs=(
            TensorSpec(name="TEXT", datatype="BYTES", dims=(1,)),
            TensorSpec(name="input_ids", datatype="INT64", dims=(-1,)),
        ),
        outputs=(TensorSpec(name="embedding", datatype="FP32", dims=(384,)),),
        dynamic_batching=DynamicBatching(
            max_queue_delay_us=500,
            preferred_batch_sizes=(8, 16),
            priority_levels=3,
            default_priority_level=2,
            queue_policy=QueuePolicy(
                max_queue_size=100,
                default_timeout_us=20000,
                allow_timeout_override=True,
                timeout_action="delay",
            ),
            priority_queue_policy={
                1: QueuePolicy(
                    max_queue_size=10,
                    default_timeout_us=0,  # as in Triton: a pbtxt that names none has none
                    allow_timeout_override=False,
                    timeout_action="reject",
                )
            },
            preserve_ordering=True,
        ),
        instances=Instances(count=2, intra_op_threads=4, inter_op_threads=1),
        # KIND_CPU instances run on the CPU: the GPU accelerators do not apply.
        execution_providers=(ExecutionProvider(name="cpu"),),
        text=TextPipeline(pooling="cls", max_length=128),
        warmup=(Warmup(batch_size=4, data="zero", dims={"input_ids": (7,)}, count=2),),
        version_policy=VersionPolicy(specific=(1, 3)),
    )


def test_gpu_accelerators_become_execution_providers_in_order() -> None:
    spec = pbtxt_spec(
        TRITON_PBTXT.replace("kind: KIND_CPU", "kind: KIND_GPU"),
    )
    assert spec.execution_providers == (
        ExecutionProvider(name="tensorrt", options={"precision_mode": "FP16"}),
        ExecutionProvider(name="cuda"),  # TensorRT falls back to CUDA, then the CPU
        ExecutionProvider(name="cpu"),
    )


def test_a_minimal_pbtxt_takes_the_folder_name_and_the_defaults() -> None:
    spec = pbtxt_spec('platform: "onnxruntime_onnx"')
    assert spec == ModelSpec(name="folder")


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("max_batch_sizes: 4", ["not a valid Triton model config", "max_batch_sizes"]),
        ("max_batch_size: 0\ndynamic_batching { }", ["dynamic_batching", "max_batch_size"]),
        (
            "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 8 ] }",
            ["preferred_batch_sizes", "max_batch_size"],
        ),
        ('input { name: "x" data_type: TYPE_BF16 dims: [ 1 ] }', ["'x'", "TYPE_BF16"]),
        ('output { name: "y" dims: [ 1 ] }', ["'y'", "TYPE_INVALID"]),
        ('input { name: "x" data_type: TYPE_FP32 dims: [ -2 ] }', ["inputs.0.dims"]),
        (
            'parameters { key: "intra_op_thread_count" value { string_value: "four" } }',
            ["intra_op_thread_count", "four"],
        ),
        (
            'parameters { key: "edgegate.text.pooling" value { string_value: "max" } }',
            ["text.pooling"],
        ),
    ],
)
def test_a_bad_pbtxt_is_invalid_and_says_where(text: str, names: list[str]) -> None:
    with pytest.raises(InvalidArgument) as caught:
        pbtxt_spec(text)
    message = caught.value.message
    assert message.startswith("models/folder/config.pbtxt: ")
    for name in names:
        assert name in message


def _round_trip(spec: ModelSpec) -> ModelSpec:
    """spec -> ModelConfig (what the ModelConfig RPC answers) -> pbtxt text -> spec."""
    text = text_format.MessageToString(to_model_config(spec))
    return pbtxt_spec(text, name="other")


def test_the_model_config_round_trips_through_pbtxt() -> None:
    spec = pbtxt_spec(TRITON_PBTXT)
    # Warm-up is not reported back (Triton's form needs every input's data).
    assert _round_trip(spec) == spec.model_copy(update={"warmup": ()})


def test_a_yaml_config_round_trips_through_pbtxt() -> None:
    spec = yaml_spec(
        FULL_YAML.replace("version_policy: {latest: 1}", "version_policy: {all: true}")
    )
    back = _round_trip(spec)
    assert back == spec.model_copy(update={"warmup": ()})


def test_the_model_config_reports_what_triton_clients_read() -> None:
    config = to_model_config(yaml_spec(FULL_YAML, name="minilm"))
    assert config.name == "minilm"
    assert config.platform == "onnxruntime_onnx"
    assert config.backend == "onnxruntime"
    assert [(t.name, list(t.dims)) for t in config.input] == [("input_ids", [-1]), ("TEXT", [1])]
    assert [t.data_type for t in config.input] == [mc.TYPE_INT64, mc.TYPE_STRING]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 32]
    assert config.instance_group[0].count == 2
    assert config.parameters["intra_op_thread_count"].string_value == "2"
    accelerators = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert [a.name for a in accelerators] == ["tensorrt", "cuda"]
    assert config.version_policy.latest.num_versions == 1


def test_the_default_version_policy_is_reported_as_the_latest_one() -> None:
    back = _round_trip(ModelSpec(name="m"))
    assert back.version_policy.select([1, 2, 3]) == ModelSpec().version_policy.select([1, 2, 3])


# -- finding the config in a model folder ----------------------------------------


def test_load_prefers_yaml_then_pbtxt_then_defaults(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    assert config_files.load(folder) == ModelSpec(name="m")
    (folder / "config.pbtxt").write_text("max_batch_size: 4")
    assert config_files.load(folder).max_batch_size == 4
    (folder / "config.yaml").write_text("max_batch_size: 8")
    assert config_files.load(folder).max_batch_size == 8


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.yaml").write_text("max_batch_size: nope")
    with pytest.raises(InvalidArgument, match=r"config\.yaml: max_batch_size"):
        config_files.load(folder)
