"""Wires the taskstore service: its gRPC servicer and NATS handlers on the shared runtime."""

from __future__ import annotations

from edgegate_common.service import ServiceRuntime
from edgegate_protos.taskstore.v1 import taskstore_pb2, taskstore_pb2_grpc
from edgegate_taskstore import __version__
from edgegate_taskstore.config import TaskstoreSettings


def build(settings: TaskstoreSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, version=__version__)
    # The generated base servicer answers UNIMPLEMENTED for every method; the
    # method bodies arrive with the taskstore service's own issue.
    runtime.grpc.add(
        taskstore_pb2_grpc.add_TaskStoreServicer_to_server,
        taskstore_pb2_grpc.TaskStoreServicer(),  # type: ignore[abstract]
        service_name=taskstore_pb2.DESCRIPTOR.services_by_name["TaskStore"].full_name,
    )
    return runtime
