"""Wire compatibility of edgegate's OIP v2 protos with the stock tritonclient.

Every message, field, enum value and RPC in tritonclient's generated modules must
exist in ours with the same wire meaning (ours may be a superset of an older
tritonclient). The two live in different descriptor pools, so they are compared
by full name, in their canonical ``*DescriptorProto`` form.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import cast

import pytest
from google.protobuf import descriptor_pb2, text_format
from google.protobuf.descriptor import FileDescriptor
from google.protobuf.message import Message
from tritonclient.grpc import model_config_pb2 as tc_config  # type: ignore[import-untyped,unused-ignore]
from tritonclient.grpc import service_pb2 as tc_service  # type: ignore[import-untyped,unused-ignore]

try:
    from edgegate_protos.oip import grpc_service_pb2, model_config_pb2
except TypeError as exc:  # protobuf: "duplicate symbol 'inference.…'"
    raise ImportError(
        "edgegate_protos clashes with tritonclient's `inference` package in the default "
        "protobuf descriptor pool; generate it into a private DescriptorPool"
    ) from exc

DescProto = descriptor_pb2.DescriptorProto
FieldProto = descriptor_pb2.FieldDescriptorProto
EnumProto = descriptor_pb2.EnumDescriptorProto
ServiceProto = descriptor_pb2.ServiceDescriptorProto
Index = tuple[dict[str, DescProto], dict[str, EnumProto], dict[str, ServiceProto]]


def _walk(prefix: str, msgs: Iterable[DescProto]) -> Iterator[tuple[str, DescProto]]:
    for msg in msgs:
        yield f"{prefix}.{msg.name}", msg
        yield from _walk(f"{prefix}.{msg.name}", msg.nested_type)


def _index(*files: FileDescriptor) -> Index:
    msgs: dict[str, DescProto] = {}
    enums: dict[str, EnumProto] = {}
    services: dict[str, ServiceProto] = {}
    for fd in files:
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        enums.update({f"{proto.package}.{e.name}": e for e in proto.enum_type})
        services.update({f"{proto.package}.{s.name}": s for s in proto.service})
        for name, msg in _walk(proto.package, proto.message_type):
            msgs[name] = msg
            enums.update({f"{name}.{e.name}": e for e in msg.enum_type})
    return msgs, enums, services


def _field_sig(msg: DescProto, field: FieldProto) -> tuple[str, ...]:
    has_oneof = field.HasField("oneof_index")
    return (
        field.name,
        FieldProto.Label.Name(field.label),
        FieldProto.Type.Name(field.type),
        field.type_name,
        f"oneof={msg.oneof_decl[field.oneof_index].name if has_oneof else None}",
        f"proto3_optional={field.proto3_optional}",
    )


def _differences(theirs: Index, ours: Index) -> list[str]:
    diffs: list[str] = []
    for name, msg in theirs[0].items():
        mine = ours[0].get(name)
        if mine is None:
            diffs.append(f"message {name}: missing")
            continue
        if msg.options.map_entry != mine.options.map_entry:
            diffs.append(f"message {name}: map_entry differs")
        by_number = {f.number: f for f in mine.field}
        for field in msg.field:
            want = _field_sig(msg, field)
            got = _field_sig(mine, by_number[field.number]) if field.number in by_number else None
            if got != want:
                diffs.append(f"field {name} #{field.number}: tritonclient {want} != ours {got}")
    for name, enum in theirs[1].items():
        values = {v.name: v.number for v in ours[1][name].value} if name in ours[1] else {}
        diffs += [
            f"enum {name}.{v.name}={v.number}: ours {values.get(v.name)}"
            for v in enum.value
            if values.get(v.name) != v.number
        ]
    for name, service in theirs[2].items():
        methods = {m.name: m for m in ours[2][name].method} if name in ours[2] else {}
        for method in service.method:
            sigs = [
                (m.input_type, m.output_type, m.client_streaming, m.server_streaming) if m else None
                for m in (method, methods.get(method.name))
            ]
            if sigs[0] != sigs[1]:
                diffs.append(f"rpc {name}/{method.name}: tritonclient {sigs[0]} != ours {sigs[1]}")
    return diffs


def test_descriptors_match_tritonclient() -> None:
    assert grpc_service_pb2.DESCRIPTOR.name == "inference/grpc_service.proto"  # ours, not theirs
    theirs = _index(tc_config.DESCRIPTOR, tc_service.DESCRIPTOR)
    ours = _index(model_config_pb2.DESCRIPTOR, grpc_service_pb2.DESCRIPTOR)
    # Guard against a vacuous pass if tritonclient's layout ever changes.
    assert "inference.ModelInferRequest.InferInputTensor" in theirs[0]
    assert len(theirs[2]["inference.GRPCInferenceService"].method) >= 20
    diffs = _differences(theirs, ours)
    assert not diffs, "wire incompatibilities with tritonclient:\n" + "\n".join(diffs)


def _infer_request() -> Message:
    req = tc_service.ModelInferRequest(model_name="resnet50", model_version="2", id="req-42")
    req.parameters["sequence_id"].int64_param = 7
    req.parameters["sequence_start"].bool_param = True
    req.parameters["priority"].uint64_param = 3
    req.parameters["temperature"].double_param = 0.25
    req.parameters["trace_level"].string_param = "TIMESTAMPS"
    image = req.inputs.add(name="INPUT0", datatype="FP32", shape=[1, 3, 2, 2])
    image.parameters["binary_data_size"].int64_param = 48
    req.inputs.add(name="PROMPT", datatype="BYTES", shape=[1, 2])
    req.raw_input_contents.append(struct.pack("<12f", *[i / 10 for i in range(12)]))
    prompts = (b"hi", "\N{SLIGHTLY SMILING FACE}".encode())
    req.raw_input_contents.append(b"".join(struct.pack("<I", len(p)) + p for p in prompts))
    req.outputs.add(name="PROBS").parameters["classification"].int64_param = 5
    shm = req.outputs.add(name="EMBEDDING")
    shm.parameters["shared_memory_region"].string_param = "out_region"
    shm.parameters["shared_memory_byte_size"].int64_param = 4096
    return cast(Message, req)


def _model_config() -> Message:
    cfg = tc_config.ModelConfig(name="resnet50", backend="onnxruntime", max_batch_size=8)
    cfg.input.add(name="INPUT0", data_type=tc_config.TYPE_FP32, dims=[3, -1, -1])
    cfg.output.add(name="PROBS", data_type=tc_config.TYPE_FP16, dims=[1000])
    cfg.version_policy.latest.num_versions = 2
    cfg.dynamic_batching.preferred_batch_size.extend([4, 8])
    cfg.dynamic_batching.priority_queue_policy[1].max_queue_size = 16
    cfg.instance_group.add(count=2, kind=tc_config.ModelInstanceGroup.KIND_GPU, gpus=[0])
    cfg.parameters["threads"].string_value = "4"
    cfg.model_transaction_policy.decoupled = True
    return cast(Message, cfg)


ROUND_TRIPS = [
    pytest.param(_infer_request(), grpc_service_pb2.ModelInferRequest, id="ModelInferRequest"),
    pytest.param(_model_config(), model_config_pb2.ModelConfig, id="ModelConfig"),
]


@pytest.mark.parametrize(("theirs", "our_cls"), ROUND_TRIPS)
def test_tritonclient_bytes_round_trip(theirs: Message, our_cls: type[Message]) -> None:
    wire = theirs.SerializeToString(deterministic=True)
    ours = our_cls.FromString(wire)  # text format omits unknown fields: catches dropped ones
    assert text_format.MessageToString(ours) == text_format.MessageToString(theirs)
    back = ours.SerializeToString(deterministic=True)
    assert back == wire
    assert type(theirs).FromString(back) == theirs
