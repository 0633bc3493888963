"""Idle WebSocket sessions on a gateway, held by worker processes, and what they cost.

`bench/gateway.py` uses this to open thousands of authenticated `/ws`
sessions and hold them idle. One client process would need as many sockets
and reader tasks as sessions, so the sessions are spread over worker
processes (this file run as a script), each with its fd limit raised to its
hard limit. A worker issues one token per session (its own user: each
session follows its own user's results, as distinct users' would), sends the
`authenticate` frame and waits for `ready`; a reader task per session then
answers the gateway's WebSocket pings, as an idle client does.

A worker reads one JSON command a line on stdin and answers one JSON line:

    {"open": n}   open n more sessions -> {"open", "opened", "failed", "errors", "seconds"}
    {"status": 1} how many are still open -> {"open", "closed_by_server"}
    {"close": 1}  close them all and exit -> {"closed"}

Also here: what the parent reads about processes (/proc: RSS, CPU time, a
pid by its command line).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

OPEN_IN_FLIGHT = 8  # handshakes one worker has under way at once (more time out on 2 cores)
READY_TIMEOUT_S = 30.0
TENANT = "bench"
SCOPES = ("infer:all-MiniLM-L6-v2", "tasks:read", "tasks:write")  # a chat user's


# -- what the parent reads about processes -----------------------------------------


def rss_bytes(pid: int) -> int:
    """Resident memory of one process (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def cpu_s(pid: int) -> float:
    """User + system CPU time of one process so far, in seconds."""
    # The command name (field 2) may hold spaces: count fields after its closing ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def pid_of(needle: str) -> int:
    """The one process whose command line holds `needle` (a unique path, say)."""
    found = [
        int(entry.name)
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and _holds(int(entry.name), needle)
    ]
    if len(found) != 1:
        raise LookupError(f"{len(found)} processes hold {needle!r} in their command line")
    return found[0]


def _holds(pid: int, needle: str) -> bool:
    try:
        return needle in command_line(pid)
    except OSError:  # gone, or not ours to read
        return False


def raise_fd_limit() -> int:
    """The soft limit on open files raised to the hard one; the new limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# -- the parent's side: workers ----------------------------------------------------


class Workers:
    """Worker processes, each holding a share of the sessions."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self._procs = procs

    @classmethod
    async def start(cls, *, count: int, url: str, keys_dir: Path) -> Workers:
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--url",
                url,
                "--keys-dir",
                str(keys_dir),
                "--worker",
                str(index),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for index in range(count)
        ]
        return cls(procs)

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs]

    async def open(self, sessions: int) -> dict[str, Any]:
        """`sessions` more, shared out evenly; the workers' answers summed."""
        shares = [sessions // len(self._procs)] * len(self._procs)
        for i in range(sessions % len(self._procs)):
            shares[i] += 1
        answers = await asyncio.gather(
            *(
                self._ask(proc, {"open": share})
                for proc, share in zip(self._procs, shares, strict=True)
            )
        )
        errors: Counter[str] = Counter()
        for answer in answers:
            errors.update(answer["errors"])
        return {
            "open": sum(a["open"] for a in answers),
            "opened": sum(a["opened"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "errors": dict(errors.most_common(5)),
            "seconds": max(a["seconds"] for a in answers),
        }

    async def status(self) -> dict[str, int]:
        answers = await asyncio.gather(*(self._ask(p, {"status": 1}) for p in self._procs))
        return {
            "open": sum(a["open"] for a in answers),
            "closed_by_server": sum(a["closed_by_server"] for a in answers),
        }

    async def close(self) -> None:
        for proc in self._procs:
            if proc.returncode is None:
                try:
                    await asyncio.wait_for(self._ask(proc, {"close": 1}), 60)
                    await asyncio.wait_for(proc.wait(), 10)
                except (TimeoutError, ConnectionError, json.JSONDecodeError):
                    proc.kill()
                    await proc.wait()

    @staticmethod
    async def _ask(proc: asyncio.subprocess.Process, command: dict[str, int]) -> dict[str, Any]:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write(json.dumps(command).encode() + b"\n")
        await proc.stdin.drain()
        line = await proc.stdout.readline()
        if not line:
            raise ConnectionError(f"ws_sessions worker {proc.pid} exited ({proc.returncode})")
        answer: dict[str, Any] = json.loads(line)
        return answer


# -- a worker -----------------------------------------------------------------------


class Sessions:
    """One worker's sessions: open them, keep answering pings, count the dropped."""

    def __init__(self, http: aiohttp.ClientSession, url: str, tokens: Any, worker: int) -> None:
        self._http, self._url, self._tokens, self._worker = http, url, tokens, worker
        self._open: dict[int, aiohttp.ClientWebSocketResponse] = {}
        self._readers: set[asyncio.Task[None]] = set()
        self._issued = 0
        self.closed_by_server = 0

    @property
    def count(self) -> int:
        return len(self._open)

    async def open(self, n: int) -> dict[str, Any]:
        started = time.perf_counter()
        errors: Counter[str] = Counter()
        slots = asyncio.Semaphore(OPEN_IN_FLIGHT)

        async def one() -> None:
            async with slots:
                self._issued += 1
                try:
                    await self._open_one(self._issued)
                except Exception as exc:
                    errors[f"{type(exc).__name__}: {exc}"[:160]] += 1

        await asyncio.gather(*(one() for _ in range(n)))
        return {
            "open": self.count,
            "opened": n - sum(errors.values()),
            "failed": sum(errors.values()),
            "errors": dict(errors),
            "seconds": round(time.perf_counter() - started, 2),
        }

    async def _open_one(self, number: int) -> None:
        token = self._tokens.issue(
            tenant=TENANT, subject=f"ws-{self._worker}-{number}", scopes=SCOPES, ttl_s=6 * 3600
        ).token
        ws = await self._http.ws_connect(self._url, autoping=True, heartbeat=None)
        try:
            await ws.send_str(json.dumps({"type": "authenticate", "token": token}))
            answer = await ws.receive(timeout=READY_TIMEOUT_S)
            if answer.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"{answer.type.name} instead of ready")
            frame = json.loads(answer.data)
            if frame.get("type") != "ready":
                raise ConnectionError(f"{frame.get('code')}: {frame.get('message')}")
        except BaseException:
            await ws.close()
            raise
        self._open[number] = ws
        reader = asyncio.create_task(self._read(number, ws))
        self._readers.add(reader)
        reader.add_done_callback(self._readers.discard)

    async def _read(self, number: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Idle, but reading: pings are answered inside receive()."""
        async for _ in ws:
            pass
        if self._open.pop(number, None) is not None:
            self.closed_by_server += 1

    async def close(self) -> int:
        sockets, self._open = list(self._open.values()), {}
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        for reader in list(self._readers):
            reader.cancel()
        return len(sockets)


async def serve(args: argparse.Namespace) -> None:
    from edgegate_security.core.keyring import KeyRing
    from edgegate_security.core.tokens import TokenIssuer

    raise_fd_limit()
    ring = KeyRing.open(args.keys_dir, max_token_ttl_s=24 * 3600)
    tokens = TokenIssuer(ring, issuer="edgegate", audience="edgegate")
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        sessions = Sessions(http, args.url, tokens, args.worker)
        while line := await stdin.readline():
            command = json.loads(line)
            if "open" in command:
                answer: dict[str, Any] = await sessions.open(command["open"])
            elif "status" in command:
                answer = {"open": sessions.count, "closed_by_server": sessions.closed_by_server}
            else:
                answer = {"closed": await sessions.close()}
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
            if "close" in command:
                return


def main() -> None:
    parser = argparse.ArgumentParser(description="one worker holding idle /ws sessions")
    parser.add_argument("--url", required=True, help="ws://host:port/ws")
    parser.add_argument("--keys-dir", type=Path, required=True, help="the security keys")
    parser.add_argument("--worker", type=int, default=0)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
