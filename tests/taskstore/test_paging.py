"""Listing pages by size: any allowed page_size fits a NATS reply and a gRPC client's 4 MiB.

Real processes: nats-server, security, a taskstore replica and a gateway. The
tasks are written into the taskstore's own bucket (finished, so no worker
takes them): 1,000 of 8 KiB, the issue's "page_size=1000 of fat tasks", and
one near the largest record the store keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from support.suite_stack import TENANT, Stack, bearer, start_stack, text_envelope

from edgegate_common import subjects
from edgegate_protos.taskstore.v1 import taskstore_pb2 as pb
from edgegate_taskstore.adapters.records import Storage, TaskRecords

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

USER = "hoarder"
FAT_TASKS = 1000
FAT_BYTES = 8 * 1024
# A record the store keeps but no page could hold beside another: a page of its own.
HUGE_BYTES = 900 * 1024
GRPC_DEFAULT_MAX_BYTES = 4 * 1024 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("paging"), inference=False)
    try:
        asyncio.run(_write_tasks(running))
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def gateway_port(stack: Stack) -> int:
    _, port = stack.start_gateway()
    return port


@pytest.fixture(scope="module")
def written(stack: Stack) -> list[str]:
    return [_task_id(i) for i in range(FAT_TASKS + 1)]


def _task_id(i: int) -> str:
    return subjects.task_id(TENANT, USER, f"fat-{i}")


def _task(i: int) -> pb.Task:
    size = HUGE_BYTES if i == FAT_TASKS // 2 else FAT_BYTES
    task = pb.Task(id=_task_id(i), tenant=TENANT, user=USER, status=pb.TASK_STATUS_COMPLETED)
    task.envelope.CopyFrom(text_envelope("x" * size, key=f"fat-{i}"))
    task.result.parts.add(text="done")
    task.created_at.GetCurrentTime()
    task.updated_at.CopyFrom(task.created_at)
    return task


async def _write_tasks(stack: Stack) -> None:
    async with stack.bus() as bus:
        records = await TaskRecords.open(bus.js, storage=Storage())
        for start in range(0, FAT_TASKS + 1, 100):
            batch = range(start, min(start + 100, FAT_TASKS + 1))
            await asyncio.gather(*(records.create(_task(i)) for i in batch))


def _check_pages(pages: list[list[str]], written: list[str]) -> None:
    listed = [task_id for page in pages for task_id in page]
    assert len(pages) > 1, "8 MiB of tasks cannot fit one reply"
    assert sorted(listed) == sorted(written)  # every task, each exactly once


async def test_grpc_list_pages_by_size(stack: Stack, written: list[str]) -> None:
    pages: list[list[str]] = []
    revisions: list[int] = []
    async with stack.stub() as stub:
        page_token = ""
        while True:
            page = await stub.List(
                pb.ListRequest(page_size=1000, page_token=page_token),
                metadata=bearer(stack.token(sub=USER)),
            )
            assert page.ByteSize() < GRPC_DEFAULT_MAX_BYTES
            pages.append([t.id for t in page.tasks])
            revisions.extend(t.revision for t in page.tasks)
            page_token = page.next_page_token
            if not page_token:
                break
    _check_pages(pages, written)
    assert revisions == sorted(revisions)


async def test_nats_list_pages_by_size(stack: Stack, written: list[str]) -> None:
    headers = {"Authorization": f"Bearer {stack.token(sub=USER)}"}
    pages: list[list[str]] = []
    async with stack.bus() as bus:
        page_token = ""
        while True:
            page = await bus.request(
                subjects.TASKSTORE_LIST,
                pb.ListRequest(page_size=1000, page_token=page_token),
                pb.ListResponse,
                headers=headers,
            )
            assert page.ByteSize() <= bus.max_payload
            pages.append([t.id for t in page.tasks])
            page_token = page.next_page_token
            if not page_token:
                break
    _check_pages(pages, written)


async def test_gateway_lists_any_allowed_page_size_in_pages(
    stack: Stack, gateway_port: int, written: list[str]
) -> None:
    pages: list[list[str]] = []
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway_port}",
        headers={"Authorization": f"Bearer {stack.token(sub=USER)}"},
        timeout=30,
    ) as http:
        params = {"page_size": "1000"}
        while True:
            response = await http.get("/v1/tasks", params=params)
            assert response.status_code == 200, response.text
            body = response.json()
            pages.append([t["id"] for t in body["data"]])
            if not body["next_page_token"]:
                break
            params["page_token"] = body["next_page_token"]
    _check_pages(pages, written)
