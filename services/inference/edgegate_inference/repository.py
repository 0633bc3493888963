"""The model repository on disk and the versions loaded from it.

Layout (Triton's): `<root>/<model>/<version>/model.onnx`, the model's config
(`config.yaml` or `config.pbtxt`) in `<root>/<model>/`, versions as integer
folder names. The version policy picks which versions serve.

Loading is double-buffered: new versions are built and warmed beside the
serving ones; only when all of them are ready does the table switch, in one
assignment, so a request sees either the old set or the new one. Retired
versions then drain (their queued requests finish) and are released. A load
that fails changes nothing: the old versions keep serving and the error is
kept as the model's reason in the repository index.

With `poll_s` > 0 the folder is scanned that often: a new model or version
folder, a changed config or a replaced model file reloads that model; a
removed folder unloads it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from edgegate_common.errors import (
    EdgegateError,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from edgegate_common.logging import get_logger
from edgegate_inference.core import config_files
from edgegate_inference.core import spec as spec_module
from edgegate_inference.core.spec import MODEL_FILE
from edgegate_inference.model import ModelVersion, build_version

log = get_logger(__name__)

# Called after a model's table changed: (model, versions now served, versions retired).
ChangeListener = Callable[[str, list[ModelVersion], list[ModelVersion]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    version: str
    state: str  # READY, UNAVAILABLE, LOADING
    reason: str


class ModelRepository:
    def __init__(self, root: Path, *, poll_s: float = 0.0, drain_timeout_s: float = 30.0) -> None:
        self.root = root
        self._poll_s = poll_s
        self._drain_timeout_s = drain_timeout_s
        self._served: dict[str, dict[str, ModelVersion]] = {}
        self._errors: dict[str, str] = {}
        self._failed: dict[str, dict[str, str]] = {}  # fingerprints of the last failed load
        self._loading: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[ChangeListener] = []
        self._poller: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._unloaded: set[str] = set()  # explicitly unloaded: the poller leaves them

    def on_change(self, listener: ChangeListener) -> None:
        self._listeners.append(listener)

    # -- lookups (the hot path: plain dict reads) ---------------------------

    def get(self, name: str, version: str = "") -> ModelVersion:
        versions = self._served.get(name)
        if versions is None:
            raise self._missing(name)
        if not version:
            return versions[max(versions, key=int)]
        found = versions.get(version)
        if found is None:
            raise NotFound(
                f"model {name!r} has no version {version!r} loaded; serving {sorted(versions)}"
            )
        return found

    def _missing(self, name: str) -> EdgegateError:
        if name in self._loading:
            return Unavailable(f"model {name!r} is loading; retry shortly")
        reason = self._errors.get(name)
        if reason:
            return Unavailable(f"model {name!r} failed to load: {reason}")
        return NotFound(f"unknown model {name!r}")

    def ready(self, name: str, version: str = "") -> bool:
        try:
            self.get(name, version)
        except EdgegateError:
            return False
        return True

    def versions_of(self, name: str) -> list[ModelVersion]:
        """The versions of `name` now serving, oldest first; NOT_FOUND if none."""
        versions = self._served.get(name)
        if versions is None:
            raise self._missing(name)
        return [versions[v] for v in sorted(versions, key=int)]

    def served(self) -> list[ModelVersion]:
        return [mv for versions in list(self._served.values()) for mv in versions.values()]

    def index(self) -> list[IndexEntry]:
        """Every model folder on disk with each version's state and, if not ready, why."""
        entries: list[IndexEntry] = []
        for model_dir in self._model_dirs():
            name = model_dir.name
            served = self._served.get(name, {})
            on_disk = _versions(model_dir)
            error = self._errors.get(name, "")
            try:
                selected = set(config_files.load(model_dir).version_policy.select(on_disk))
            except EdgegateError as exc:
                selected, error = set(on_disk), error or exc.message
            for v in sorted(set(on_disk) | {int(v) for v in served}):
                if str(v) in served:
                    entries.append(IndexEntry(name, str(v), "READY", ""))
                elif v not in selected:
                    entries.append(
                        IndexEntry(
                            name, str(v), "UNAVAILABLE", "not selected by the version policy"
                        )
                    )
                elif name in self._loading:
                    entries.append(IndexEntry(name, str(v), "LOADING", ""))
                else:
                    entries.append(IndexEntry(name, str(v), "UNAVAILABLE", error or "not loaded"))
            if not on_disk and not served:
                entries.append(IndexEntry(name, "", "UNAVAILABLE", error or "no version folders"))
        return entries

    # -- loading and unloading ----------------------------------------------

    async def load_all(self) -> None:
        """Load every model on disk; one model failing does not stop the others."""
        for model_dir in self._model_dirs():
            with contextlib.suppress(EdgegateError):
                await self.load(model_dir.name)

    async def load(self, name: str, *, only_if_changed: bool = False) -> None:
        """(Re)load `name` per its config and version policy, double-buffered.

        An explicit load (`only_if_changed=False`) also undoes an explicit unload,
        which the poller otherwise respects.
        """
        model_dir = self.root / name
        if not spec_module.valid_model_name(name) or not model_dir.is_dir():
            raise NotFound(f"model {name!r} is not in the repository {self.root}")
        if only_if_changed and name in self._unloaded:
            return
        self._unloaded.discard(name)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            self._loading.add(name)
            try:
                await self._load_locked(name, model_dir, only_if_changed=only_if_changed)
            except Exception as exc:
                # Whatever broke (a half-copied tokenizer, a file gone mid-scan, an
                # ONNX Runtime error we do not map): this model keeps its old
                # versions and says why; other models and the poller carry on.
                if not isinstance(exc, EdgegateError):
                    log.exception("model load failed unexpectedly", model=name)
                    exc = Internal(f"model {name!r} failed to load: {exc!r}")
                self._errors[name] = exc.message
                log.warning(
                    "model load failed; previous versions keep serving",
                    model=name,
                    error=exc.message,
                )
                raise exc from None
            else:
                self._errors.pop(name, None)
            finally:
                self._loading.discard(name)

    async def _load_locked(self, name: str, model_dir: Path, *, only_if_changed: bool) -> None:
        spec = config_files.load(model_dir)
        selected = [str(v) for v in spec.version_policy.select(_versions(model_dir))]
        if not selected:
            raise InvalidArgument(
                f"model {name!r}: no version folder with {MODEL_FILE} matches its version policy"
            )
        current = self._served.get(name, {})
        wanted = {v: _fingerprint(model_dir, v) for v in selected}
        unchanged = {
            v: current[v]
            for v, fp in wanted.items()
            if v in current and current[v].fingerprint == fp
        }
        if only_if_changed and len(unchanged) == len(wanted) == len(current):
            return
        if only_if_changed and self._failed.get(name) == wanted:
            return  # this exact set failed already: wait for a change on disk
        self._failed.pop(name, None)
        keep = unchanged if only_if_changed else {}
        built: list[ModelVersion] = []
        try:
            for version, fingerprint in wanted.items():
                if version in keep:
                    continue
                mv = await asyncio.to_thread(
                    build_version,
                    name=name,
                    version=version,
                    model_dir=model_dir,
                    spec=spec.model_copy(update={"name": name}),
                    fingerprint=fingerprint,
                )
                built.append(mv)
        except BaseException as exc:
            if isinstance(exc, Exception):  # a cancelled load may be retried as it is
                self._failed[name] = wanted
            for mv in built:
                mv.release()
            raise
        for mv in built:
            mv.start()
        await self._switch(name, {**keep, **{mv.version: mv for mv in built}})

    async def unload(self, name: str, *, explicit: bool = True) -> None:
        """Stop serving `name`. An explicit unload sticks until an explicit load."""
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name not in self._served:
                raise NotFound(f"model {name!r} is not loaded")
            if explicit:
                self._unloaded.add(name)
            await self._switch(name, {})
            self._errors.pop(name, None)

    async def _switch(self, name: str, new: dict[str, ModelVersion]) -> None:
        old = self._served.get(name, {})
        if new:
            self._served[name] = new
        else:
            self._served.pop(name, None)
        kept = {id(mv) for mv in new.values()}
        retired = [mv for mv in old.values() if id(mv) not in kept]
        # Retiring runs in a task of its own: a caller that stops waiting (a
        # load RPC past its deadline) must not leave versions half-closed.
        task = asyncio.get_running_loop().create_task(self._retire(name, new, retired))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        await asyncio.shield(task)

    async def _retire(
        self, name: str, new: dict[str, ModelVersion], retired: list[ModelVersion]
    ) -> None:
        try:
            for listener in self._listeners:
                try:
                    await listener(name, list(new.values()), retired)
                except Exception:
                    log.exception("repository listener failed", model=name)
        finally:
            for mv in retired:
                await mv.close(drain_timeout_s=self._drain_timeout_s)
        if retired:
            log.info("model versions retired", model=name, versions=[mv.version for mv in retired])

    # -- polling ----------------------------------------------------------

    def start_polling(self) -> None:
        if self._poll_s > 0 and self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.rescan()
            except Exception:  # the poller must outlive any one bad scan
                log.exception("repository scan failed")

    async def rescan(self) -> None:
        on_disk = {d.name for d in self._model_dirs()}
        for name in sorted(on_disk):
            with contextlib.suppress(EdgegateError):
                await self.load(name, only_if_changed=True)
        for name in sorted(set(self._served) - on_disk):
            with contextlib.suppress(EdgegateError):
                await self.unload(name, explicit=False)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for name in list(self._served):
            await self._switch(name, {})
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    def _model_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(
            d for d in self.root.iterdir() if d.is_dir() and spec_module.valid_model_name(d.name)
        )


def _versions(model_dir: Path) -> list[int]:
    return sorted(
        int(d.name) for d in model_dir.iterdir() if d.name.isdigit() and (d / MODEL_FILE).is_file()
    )


def _fingerprint(model_dir: Path, version: str) -> str:
    """Changes when the model file or the config changes (size and mtime, cheap to read)."""
    parts = []
    for path in (model_dir / version / MODEL_FILE, *sorted(model_dir.glob("config.*"))):
        with contextlib.suppress(OSError):
            st = path.stat()
            parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)
