"""Wires the taskstore service: storage, workers and both transports on the shared runtime."""

from __future__ import annotations

from dataclasses import dataclass

from edgegate_common.bus import Bus
from edgegate_common.bus.readiness import ModelReadiness
from edgegate_common.service import ServiceRuntime, StopHook
from edgegate_protos.taskstore.v1 import taskstore_pb2, taskstore_pb2_grpc
from edgegate_taskstore import __version__
from edgegate_taskstore.adapters import bus as taskstore_bus
from edgegate_taskstore.adapters.gatekeeper import Gatekeeper
from edgegate_taskstore.adapters.queue import QueueSettings, WorkQueue
from edgegate_taskstore.adapters.records import Storage, TaskRecords
from edgegate_taskstore.api import PAGE_HEADROOM_BYTES, Limits, TaskStoreApi
from edgegate_taskstore.config import TaskstoreSettings
from edgegate_taskstore.core.retry import Backoff
from edgegate_taskstore.servicer import TaskStoreServicer
from edgegate_taskstore.sessions import SessionStates
from edgegate_taskstore.worker import Workers, WorkerSettings

GRPC_DEFAULT_MAX_RECEIVE_BYTES = 4 * 1024 * 1024


def build(settings: TaskstoreSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(settings, version=__version__)

    async def start(bus: Bus) -> None:
        # The storage needs the bus, so the servicer is registered here: still
        # before gRPC starts serving.
        stores = await _open_stores(bus, settings)
        api = _api(bus, settings, stores)
        runtime.grpc.add(
            taskstore_pb2_grpc.add_TaskStoreServicer_to_server,
            TaskStoreServicer(api),
            service_name=taskstore_pb2.DESCRIPTOR.services_by_name["TaskStore"].full_name,
        )
        await taskstore_bus.serve(bus, api)
        if settings.workers:
            runtime.on_stop(await _start_workers(bus, settings, stores))

    runtime.on_start(start)
    return runtime


@dataclass(frozen=True, slots=True)
class _Stores:
    """The JetStream-backed state the API and the workers share."""

    records: TaskRecords
    queue: WorkQueue
    sessions: SessionStates


async def _open_stores(bus: Bus, s: TaskstoreSettings) -> _Stores:
    storage = Storage(
        replicas=s.replicas,
        finished_ttl_s=s.finished_ttl_s,
        # A failed task stays as long as its dead-letter entry, so Retry finds it.
        failed_ttl_s=max(s.finished_ttl_s, s.dead_letter_ttl_s),
        max_bytes=s.max_store_bytes,
    )
    records = await TaskRecords.open(bus.js, storage=storage)
    queue = await WorkQueue.open(
        bus,
        storage=storage,
        settings=QueueSettings(
            ack_wait_s=s.ack_wait_s,
            duplicate_window_s=s.duplicate_window_s,
            dead_letter_ttl_s=s.dead_letter_ttl_s,
            events_ttl_s=s.events_ttl_s,
        ),
    )
    sessions = await SessionStates.open(
        bus.js,
        replicas=s.replicas,
        max_bytes=s.max_state_bytes,
        max_skew_ms=s.max_clock_skew_ms,
    )
    return _Stores(records=records, queue=queue, sessions=sessions)


def _api(bus: Bus, s: TaskstoreSettings, stores: _Stores) -> TaskStoreApi:
    return TaskStoreApi(
        gatekeeper=Gatekeeper(bus, cache_s=s.auth_cache_s),
        records=stores.records,
        queue=stores.queue,
        sessions=stores.sessions,
        limits=Limits(
            max_envelope_bytes=s.max_envelope_bytes,
            # A List reply must fit a NATS reply and a gRPC client's default 4 MiB.
            max_page_bytes=min(bus.max_payload, GRPC_DEFAULT_MAX_RECEIVE_BYTES)
            - PAGE_HEADROOM_BYTES,
        ),
    )


async def _start_workers(bus: Bus, s: TaskstoreSettings, stores: _Stores) -> StopHook:
    """Start the model readiness watch and the workers; returns what stops them."""
    readiness = ModelReadiness(bus, recheck_s=s.model_wait_s)
    await readiness.start()
    queue = stores.queue
    workers = Workers(
        bus=bus,
        records=stores.records,
        queue=queue,
        readiness=readiness,
        settings=WorkerSettings(
            concurrency=s.workers,
            max_attempts=s.max_attempts,
            backoff=Backoff(base_s=s.backoff_base_s, cap_s=s.backoff_cap_s),
            infer_timeout_s=s.infer_timeout_s,
            # From the consumers as they are: an older one keeps its ack wait.
            heartbeat_s=queue.ack_wait_s / 3,
            claim_lease_s=4 * queue.ack_wait_s,
            model_wait_s=s.model_wait_s,
            max_record_bytes=bus.max_payload - 8 * 1024,
        ),
    )
    await workers.start()

    async def stop() -> None:
        await workers.stop(timeout_s=s.drain_timeout_s)
        await readiness.stop()

    return stop
