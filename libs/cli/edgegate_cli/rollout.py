"""`edgegate rollout ...` and `edgegate breaker ...`: an SRE's controls of a ModelDeployment.

The same commands run as a kubectl plugin (`kubectl edgegate rollout promote
NAME`): the `kubectl-edgegate` script is this CLI's main. Each command is one
read and one JSON merge patch of the resource; the operator does the rest.
Every `--help` ends with the `kubectl patch` that does the same, built by the
same code that builds the command's patch (rollout_patches).

This module is the command line only: the Kubernetes client is imported when
one of these commands runs, so `edgegate up` does not pay for it.
"""

from __future__ import annotations

import argparse
import io
import sys

from edgegate_cli import rollout_patches as patches

COMMANDS = ("rollout", "breaker")
DEFAULT_WAIT_S = 10.0
DEFAULT_INTERVAL_S = 2.0
BREAKER_MODES: dict[str, patches.BreakerMode] = {"open": "open", "close": "closed", "auto": "auto"}

EXIT_CODES = """exit status: 0 done; 1 no configuration, or the API server refused or failed;
2 a wrong command line"""
COMMAND_EXIT_CODES = """exit status: 0 the operator acted on it (or --wait 0: it was written);
1 no configuration, or the API server refused or failed; 2 a wrong command line;
3 sent, but the operator has not acted on it within --wait (it will, once: check
`rollout status` before sending it again); 4 the operator acted on it and refused it:
the rollout did not change (the reason is a CommandIgnored event: kubectl describe md NAME)"""
COMMAND_NOTE = """ID must be new for every command (e.g. $(uuidgen)): the operator acts once per
id and then writes it to status.lastCommandId."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`rollout` and `breaker`, each with its subcommands, on `edgegate`'s command list."""
    common = _common_options()
    rollout = commands.add_parser(
        "rollout",
        help="watch and steer a ModelDeployment's canary (`edgegate rollout --help`)",
        description="Watch and steer a ModelDeployment's canary rollout. Also runs as the "
        "kubectl plugin `kubectl edgegate rollout ...`.",
    )
    steps = rollout.add_subparsers(dest="action", required=True, metavar="COMMAND")
    _status(steps, common)
    _one_shot(steps, common, "promote", "skip the current step (--full: all of them)")
    _one_shot(steps, common, "abort", "abort the rollout: all traffic back to stable")
    _one_shot(steps, common, "retry", "start an aborted rollout again from step 0")
    for action, flag, text in (
        ("pause", True, "hold the rollout where it is"),
        ("resume", False, "let a paused rollout go on"),
    ):
        p = _leaf(steps, common, action, f"{text} (spec.paused = {str(flag).lower()})")
        _epilog(p, patches.paused(flag))
        p.set_defaults(handler=action)
    _set_version(steps, common)
    breaker = commands.add_parser(
        "breaker",
        help="force a model version's circuit breaker open or closed, or back to auto",
        description="Override the gateways' circuit breaker of one model version: `open` "
        "sends its traffic to the cloud fallback, `close` never trips it, `auto` ends the "
        "override. Writes spec.breakers; the operator passes it on to the gateways.",
    )
    modes = breaker.add_subparsers(dest="action", required=True, metavar="MODE")
    for mode, text in (
        ("open", "never call this version locally: cloud fallback or the task store instead"),
        ("close", "failures never trip this version's breaker"),
        ("auto", "end the override: the breaker trips and recovers by itself again"),
    ):
        p = _leaf(modes, common, mode, text)
        p.add_argument("--version", required=True, help="the model version, e.g. 2")
        entries = [] if mode == "auto" else [{"version": "V", "mode": BREAKER_MODES[mode]}]
        change = "removed" if mode == "auto" else "replaced or added"
        _epilog(
            p,
            patches.breakers_patch(entries, resource_version=None),
            note=f"the list is spec.breakers with version V's entry {change} (others kept): "
            "a merge patch replaces a list whole.",
        )
        p.set_defaults(handler="breaker", mode=BREAKER_MODES[mode])


def run(args: argparse.Namespace) -> int:
    """Run a parsed `rollout`/`breaker` command; errors become one line on stderr."""
    # The Kubernetes client loads only for these commands.
    from edgegate_cli import kube, rollout_actions

    what = f"edgegate {args.command} {args.action}"
    for stream in (sys.stdout, sys.stderr):
        # A terminal that cannot show a symbol in a message gets "?", not a traceback.
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")
    try:
        where = kube.target(
            kubeconfig=args.kubeconfig, context=args.context, namespace=args.namespace
        )
        api = kube.ModelDeployments(where)
        try:
            code: int = getattr(rollout_actions, args.handler)(args, api)
        finally:
            api.close()
    except kube.KubeError as exc:
        print(f"{what}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def _status(
    steps: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = _leaf(steps, common, "status", "draw the rollout: phase, weights, analysis, steps")
    p.add_argument("-w", "--watch", action="store_true", help="redraw on every change until Ctrl-C")
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help="how often --watch reads the resource (default: %(default)s)",
    )
    p.set_defaults(handler="status")


def _one_shot(
    steps: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    action: patches.Action,
    text: str,
) -> None:
    p = _leaf(steps, common, action, text)
    if action == "promote":
        p.add_argument(
            "--full",
            action="store_true",
            help="skip all remaining steps: the canary takes all traffic and becomes stable",
        )
    p.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help="how long to wait for the operator to act on it; 0: do not wait "
        "(default: %(default)s)",
    )
    note = COMMAND_NOTE
    if action == "promote":
        note += '\nWith --full the action is "promoteFull".'
    _epilog(p, patches.command(action, "ID"), note=note, exit_codes=COMMAND_EXIT_CODES)
    p.set_defaults(handler="command")


def _set_version(
    steps: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = _leaf(steps, common, "set-version", "roll out another model version as a canary")
    p.add_argument("version", metavar="VERSION", help="the new spec.model.version, e.g. 3")
    p.add_argument("--uri", required=True, help="where the model file is (s3://, https://, ...)")
    p.add_argument(
        "--sha256",
        metavar="HEX",
        help="the model file's SHA-256 (64 hex digits); without it, spec.model.sha256 is removed",
    )
    _epilog(
        p,
        patches.model_version("VERSION", uri="URI", sha256="HEX"),
        note='without --sha256 the patch has "sha256":null, which removes the old digest.',
    )
    p.set_defaults(handler="set_version")


def _leaf(
    parent: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    name: str,
    text: str,
) -> argparse.ArgumentParser:
    p = parent.add_parser(
        name,
        parents=[common],
        help=text,
        description=text[0].upper() + text[1:] + ".",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", metavar="NAME", help="the ModelDeployment's name")
    return p


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-n",
        "--namespace",
        help="the ModelDeployment's namespace (default: the kubeconfig context's namespace, "
        "else 'default')",
    )
    common.add_argument(
        "--kubeconfig",
        help="the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the "
        "in-cluster service account)",
    )
    common.add_argument(
        "--context", help="the kubeconfig context to use (default: its current context)"
    )
    return common


def _epilog(
    p: argparse.ArgumentParser,
    patch: patches.Patch,
    *,
    note: str = "",
    exit_codes: str = EXIT_CODES,
) -> None:
    """End --help with the `kubectl patch` that does the same, and the exit codes."""
    text = f"the same with kubectl:\n  {patches.kubectl(patch)}\n"
    p.epilog = text + (f"{note}\n" if note else "") + "\n" + exit_codes
