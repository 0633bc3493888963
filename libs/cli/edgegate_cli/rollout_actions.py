"""What each SRE command does against the API: read, merge-patch, and for commands, wait.

Exit status, the same for every command (docs/operator.md, "SRE controls"):
0 done; 1 the configuration or the API server failed (one line on stderr);
2 the command line was wrong; 3 a one-shot command was written but the
operator has not acted on it within --wait (it stays on the resource and is
acted on once, when the operator gets to it); 4 the operator acted on the
command and refused it: the rollout did not change (its reason is a
CommandIgnored event on the resource).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from edgegate_cli import rollout_patches as patches
from edgegate_cli import rollout_view as view
from edgegate_cli.kube import Conflict, KubeError, ModelDeployments

NOT_ACKNOWLEDGED = 3
REFUSED = 4
ACK_POLL_S = 0.2
BREAKER_WRITE_TRIES = 3
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def status(args: argparse.Namespace, api: ModelDeployments) -> int:
    if not args.watch:
        _draw(api.get(args.name), sys.stdout)
        return 0
    return watch(api, args.name, interval_s=args.interval, out=sys.stdout)


def watch(api: ModelDeployments, name: str, *, interval_s: float, out: TextIO) -> int:
    """Redraw on every change until Ctrl-C; a terminal also sees the ages tick.

    Into a pipe or file a new picture is written only when the resource
    changed, so a log of `--watch` is a log of transitions.
    """
    shown = ""
    try:
        while True:
            try:
                obj = api.get(name)
            except KubeError as exc:
                if exc.lasting:
                    raise
                print(f"{exc}; trying again", file=sys.stderr)
                time.sleep(interval_s)
                continue
            key = _draw_key(obj, out)
            if key != shown:
                if out.isatty():
                    out.write(CLEAR_SCREEN)
                elif shown:
                    out.write("\n")
                _draw(obj, out)
                shown = key
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return 0


def command(args: argparse.Namespace, api: ModelDeployments) -> int:
    """Write a one-shot command; wait for status.lastCommandId to name it; say what happened."""
    action: patches.Action = "promoteFull" if getattr(args, "full", False) else args.action
    before = _status(api.get(args.name))
    command_id = patches.new_command_id()
    api.patch(args.name, patches.command(action, command_id))
    print(f"{args.name}: {action} sent (command {command_id})")
    if args.wait <= 0:
        print("not waiting for the operator (--wait 0): `edgegate rollout status` shows it")
        return 0
    after = _acknowledged(api, args.name, command_id, wait_s=args.wait)
    if after is None:
        print(
            f"the operator has not acted on it yet (waited {args.wait:g} s). The command stays "
            "on the resource and is acted on once, when the operator gets to it; check "
            f"`edgegate rollout status {args.name}` before sending it again.",
            file=sys.stderr,
        )
        return NOT_ACKNOWLEDGED
    print(f"the operator acted: {_summary(after)}")
    if _rollout_state(after) == _rollout_state(before):
        print(
            f"the rollout did not change: the operator refused {action}. Its reason is a "
            f"CommandIgnored event: kubectl -n {api.namespace} describe md {args.name}",
            file=sys.stderr,
        )
        return REFUSED
    return 0


def pause(args: argparse.Namespace, api: ModelDeployments) -> int:
    api.patch(args.name, patches.paused(True))
    print(f"{args.name}: paused (spec.paused = true); the rollout holds until `resume`")
    return 0


def resume(args: argparse.Namespace, api: ModelDeployments) -> int:
    obj = api.patch(args.name, patches.paused(False))
    print(f"{args.name}: resumed (spec.paused = false)")
    waiting = _waiting_pause(obj)
    if waiting is not None:
        print(
            f"step {waiting} is a pause until promoted: "
            f"`edgegate rollout promote {args.name}` moves past it"
        )
    return 0


def set_version(args: argparse.Namespace, api: ModelDeployments) -> int:
    api.patch(args.name, patches.model_version(args.version, uri=args.uri, sha256=args.sha256))
    digest = f", sha256 {args.sha256}" if args.sha256 else ", no sha256"
    print(
        f"{args.name}: spec.model.version = {args.version} (uri {args.uri}{digest}); "
        "the operator rolls it out as a canary"
    )
    return 0


def breaker(args: argparse.Namespace, api: ModelDeployments) -> int:
    """Read spec.breakers, change this version's entry, write the list back (retry on 409)."""
    mode: patches.BreakerMode = args.mode
    for attempt in range(1, BREAKER_WRITE_TRIES + 1):
        obj = api.get(args.name)
        spec, meta = _part(obj, "spec"), _part(obj, "metadata")
        listed = spec.get("breakers")
        current: list[Any] = listed if isinstance(listed, list) else []
        entries = patches.breakers(current, version=args.version, mode=mode)
        try:
            api.patch(
                args.name,
                patches.breakers_patch(entries, resource_version=meta.get("resourceVersion")),
            )
            break
        except Conflict:
            if attempt == BREAKER_WRITE_TRIES:
                raise
    known = {_part(obj, "status").get(k) for k in ("stableVersion", "canaryVersion")}
    known.add(_part(spec, "model").get("version"))
    if args.version not in known:
        print(
            f"note: version {args.version} is neither the stable, the canary nor the spec's "
            "version; the override applies once it is",
            file=sys.stderr,
        )
    said = "back to auto" if mode == "auto" else f"forced {mode}"
    now = ", ".join(f"{e.get('version')}={e.get('mode')}" for e in entries if isinstance(e, dict))
    print(f"{args.name}: breaker of version {args.version} {said} (spec.breakers: {now or '[]'})")
    return 0


def _acknowledged(
    api: ModelDeployments, name: str, command_id: str, *, wait_s: float
) -> dict[str, Any] | None:
    """The status once lastCommandId is `command_id`; None after `wait_s` or Ctrl-C."""
    deadline = time.monotonic() + wait_s
    try:
        while time.monotonic() < deadline:
            time.sleep(min(ACK_POLL_S, max(0.0, deadline - time.monotonic())))
            try:
                found = _status(api.get(name))
            except KubeError as exc:
                if exc.lasting:
                    raise
                continue
            if found.get("lastCommandId") == command_id:
                return found
    except KeyboardInterrupt:
        return None
    return None


def _summary(st: dict[str, Any]) -> str:
    parts = [str(st.get("phase") or "Pending"), f"step {st.get('step', 0)}"]
    parts.append(f"weight {st.get('weight', 0)}%")
    text = ", ".join(parts)
    return f"{text}: {st['message']}" if st.get("message") else text


def _rollout_state(st: dict[str, Any]) -> tuple[object, ...]:
    """What any acted-on command changes: a promote the step, an abort the reason, ..."""
    keys = ("phase", "step", "weight", "canaryVersion", "stableVersion", "abortReason")
    return tuple(st.get(k) for k in keys)


def _waiting_pause(obj: dict[str, Any]) -> int | None:
    """The current step's index if it is a pause that only a promote ends."""
    st = _status(obj)
    if not st.get("canaryVersion") or st.get("abortReason"):
        return None
    steps = _part(_part(obj, "spec"), "canary").get("steps")
    step = st.get("step")
    if not isinstance(steps, list) or not isinstance(step, int) or not 0 <= step < len(steps):
        return None
    current = steps[step]
    if isinstance(current, dict) and "pause" in current:
        pause = current["pause"] if isinstance(current["pause"], dict) else {}
        return None if pause.get("duration") else step
    return None


def _draw(obj: dict[str, Any], out: TextIO) -> None:
    lines = view.render(obj, glyphs=view.glyphs_for(out), now=datetime.now(tz=UTC))
    out.write("\n".join(lines) + "\n")
    out.flush()


def _draw_key(obj: dict[str, Any], out: TextIO) -> str:
    """What decides a redraw: the picture on a terminal, the resource's content elsewhere."""
    if out.isatty():
        return "\n".join(view.render(obj, glyphs=view.glyphs_for(out), now=datetime.now(tz=UTC)))
    meta = {k: v for k, v in _part(obj, "metadata").items() if k not in ("resourceVersion",)}
    return json.dumps({**obj, "metadata": meta}, sort_keys=True, default=str)


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return _part(obj, "status")


def _part(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}
