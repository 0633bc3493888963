"""`python -m edgegate_security.tools`, which `edgegate token` and `edgegate audit` run.

    token issue --tenant T --sub S --scope infer:* --scope tasks:read [--ttl-s 3600]
    keys rotate [--alg EdDSA]
    audit verify [--stream EDGEGATE_AUDIT]

`token issue` is the local-mode admin path: it signs with the key ring in
`--keys-dir` (the service's own, so file access to it is the credential) and
files an `admin` audit record over NATS first; `--no-audit` skips the record
when no NATS is running (offline set-up). The token goes to stdout, alone, so
`TOKEN=$(edgegate token issue ...)` works.

`keys rotate` adds a new signing key to that ring (after filing the record);
services sharing the directory reload it, so no replica restarts.

`audit verify` walks the audit stream and reports the first broken link.
Exit status: 0 intact, 1 broken, 2 when the work could not be done (one line
on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from edgegate_common import subjects
from edgegate_common.bus import Bus, client_tls_context
from edgegate_common.errors import EdgegateError
from edgegate_common.logging import configure_logging
from edgegate_security.audit.chain import EventKind, Verification
from edgegate_security.audit.log import AuditLog
from edgegate_security.audit.reader import verify_stream
from edgegate_security.config import SecuritySettings
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.reasons import Reason
from edgegate_security.core.tokens import TokenIssuer
from edgegate_security.records import issued_details

BROKEN = 1
FAILED = 2
# `token issue --help` ends with this, as written (argparse would break infer:all-MiniLM-*).
SCOPES_AND_OUTPUT = """\
scopes (--scope; repeat for more):
  infer:<model pattern>  run inference on the models it matches (fnmatch):
                         infer:all-MiniLM-L6-v2, 'infer:all-MiniLM-*', 'infer:*'
                         (quote a pattern, or the shell expands it)
  tasks:read             read async tasks
  tasks:write            create and cancel async tasks
  admin                  everything, within the token's own tenant only
  (no --scope)           a token that may do nothing

output: the token alone on stdout, so TOKEN=$(edgegate token issue ...) works;
  --json prints token, token_id, expires_at and scopes instead.

example:
  edgegate token issue --tenant acme --sub alice --scope 'infer:*' \\
      --scope tasks:read --keys-dir .edgegate/keys --ttl-s 86400
"""


def build_parser(defaults: SecuritySettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgegate", description="edgegate security tools")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ring = _ring_options(defaults)
    _add_token_commands(commands, ring=ring, defaults=defaults)
    _add_keys_commands(commands, ring=ring)
    _add_audit_commands(commands, defaults=defaults)
    return parser


def _ring_options(defaults: SecuritySettings) -> argparse.ArgumentParser:
    """What `token issue` and `keys rotate` share: the key ring, and where their record goes."""
    ring = argparse.ArgumentParser(add_help=False)
    ring.add_argument(
        "--keys-dir",
        type=Path,
        default=defaults.keys_dir,
        help="the security service's key ring (PEM files), e.g. .edgegate/keys under "
        "`edgegate up`; read access to it is the credential (default: %(default)s)",
    )
    ring.add_argument(
        "--nats-url",
        default=defaults.nats_url,
        help="the NATS server whose audit stream gets the record (default: %(default)s)",
    )
    ring.add_argument(
        "--no-audit",
        action="store_true",
        help="file no audit record: for an offline set-up with no NATS running",
    )
    return ring


def _add_token_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    ring: argparse.ArgumentParser,
    defaults: SecuritySettings,
) -> None:
    token = commands.add_parser("token", help="issue tokens (local mode, tests)")
    token_commands = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    issue = token_commands.add_parser(
        "issue",
        parents=[ring],
        help="sign a token with the service's key ring",
        description="Sign a JWT for SUB in TENANT with the service's own key ring, file an\n"
        "admin audit record, and print the token.",
        epilog=SCOPES_AND_OUTPUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    issue.add_argument(
        "--tenant",
        required=True,
        help="the tenant the token acts for, e.g. acme: it reaches that tenant's data only",
    )
    issue.add_argument(
        "--sub", required=True, help="the subject: the user or service it names, e.g. alice"
    )
    issue.add_argument(
        "--scope",
        action="append",
        default=[],
        help="one thing it may do (see scopes below); repeat for more",
    )
    issue.add_argument(
        "--ttl-s",
        type=float,
        default=3600.0,
        help=f"lifetime in seconds, at most {defaults.max_token_ttl_s} (default: %(default)s)",
    )
    issue.add_argument(
        "--issuer",
        default=defaults.issuer,
        help="the token's iss claim; services accept their own issuer (default: %(default)s)",
    )
    issue.add_argument(
        "--audience",
        default=defaults.audience,
        help="the token's aud claim; services require theirs (default: %(default)s)",
    )
    issue.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (token, token_id, expires_at, scopes), not the bare token",
    )


def _add_keys_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], *, ring: argparse.ArgumentParser
) -> None:
    keys = commands.add_parser("keys", help="the service's signing keys")
    keys_commands = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = keys_commands.add_parser(
        "rotate",
        parents=[ring],
        help="sign with a new key from now on; the old one verifies until its tokens expire",
        description="Add a new signing key to the key ring in --keys-dir. Running services "
        "sharing the directory pick it up within keys_reload_s, or at once when a token "
        "signed with it arrives; tokens signed with the old key keep verifying until they "
        "have expired. Prints the new kid as JSON.",
    )
    rotate.add_argument("--alg", choices=["ES256", "RS256", "EdDSA"], default=None)


def _add_audit_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], *, defaults: SecuritySettings
) -> None:
    audit = commands.add_parser("audit", help="check the audit log")
    audit_commands = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = audit_commands.add_parser(
        "verify",
        help="walk the hash chain and report the first broken link",
        description="Read every record of the audit stream and check each one's hash and "
        "its link to the one before. Exit 0 when intact, 1 when broken.",
    )
    verify.add_argument("--nats-url", default=defaults.nats_url)
    verify.add_argument("--stream", default=subjects.STREAM_AUDIT, help="the audit stream's name")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")


def main(argv: Sequence[str] | None = None) -> int:
    # Stdout carries the answer (a token): library log lines stay off it.
    configure_logging(service="cli", level="warning")
    defaults = SecuritySettings()
    args = build_parser(defaults).parse_args(argv)
    try:
        if args.command == "token":
            return asyncio.run(_issue(args, defaults))
        if args.command == "keys":
            return asyncio.run(_rotate(args, defaults))
        return asyncio.run(_verify(args, defaults))
    except EdgegateError as exc:
        print(f"edgegate {args.command} {args.action}: {exc.message}", file=sys.stderr)
        return FAILED


def _open_ring(args: argparse.Namespace, defaults: SecuritySettings) -> KeyRing:
    return KeyRing.open(
        args.keys_dir, alg=defaults.signing_alg, max_token_ttl_s=defaults.max_token_ttl_s
    )


async def _issue(args: argparse.Namespace, defaults: SecuritySettings) -> int:
    ring = _open_ring(args, defaults)
    issued = TokenIssuer(ring, issuer=args.issuer, audience=args.audience).issue(
        tenant=args.tenant, subject=args.sub, scopes=args.scope, ttl_s=args.ttl_s
    )
    if not args.no_audit:
        await _file(
            args.nats_url,
            defaults,
            Reason.TOKEN_ISSUED,
            tenant=issued.principal.tenant,
            details=issued_details(issued, ttl_s=args.ttl_s),
        )
    if args.json:
        principal = issued.principal
        print(
            json.dumps(
                {
                    "token": issued.token,
                    "token_id": principal.token_id,
                    "expires_at": principal.expires_at.isoformat(),
                    "scopes": sorted(principal.scopes),
                }
            )
        )
    else:
        print(issued.token)
    return 0


async def _rotate(args: argparse.Namespace, defaults: SecuritySettings) -> int:
    ring = _open_ring(args, defaults)
    ring.check_changeable()  # no record of a rotation that cannot happen
    old = ring.signing_key
    if not args.no_audit:  # first: a rotation nobody can see in the log does not happen
        await _file(args.nats_url, defaults, Reason.KEY_ROTATED, details={"old_kid": old.kid})
    new = ring.rotate(alg=args.alg)
    print(json.dumps({"kid": new.kid, "alg": new.alg, "previous_kid": old.kid}))
    return 0


async def _file(
    nats_url: str,
    settings: SecuritySettings,
    reason: Reason,
    *,
    tenant: str = "",
    details: dict[str, str],
) -> None:
    """The admin record for what this command does; Unavailable when NATS cannot be reached.

    Filed before the command's output exists: if the record cannot be stored,
    nothing was done.
    """
    bus = await _connect(nats_url, settings, name="edgegate-cli")
    try:
        audit = AuditLog(replica="edgegate-cli")
        await audit.start(bus)
        await audit.append(
            event=EventKind.ADMIN,
            reason=reason,
            tenant=tenant,
            subject="local:edgegate-cli",
            details=details,
        )
        if await audit.close(timeout_s=5.0):
            raise EdgegateError("the audit record was not stored, so nothing was done")
    finally:
        await bus.close()


async def _verify(args: argparse.Namespace, settings: SecuritySettings) -> int:
    bus = await _connect(args.nats_url, settings, name="edgegate-audit-verify")
    try:
        result = await verify_stream(bus.js, stream=args.stream)
    finally:
        await bus.close()
    print(json.dumps(_as_json(result)) if args.json else _as_text(result))
    return 0 if result.intact else BROKEN


async def _connect(url: str, s: SecuritySettings, *, name: str) -> Bus:
    """NATS, with the service's TLS settings (EDGEGATE_SECURITY_NATS_TLS_*) when set."""
    tls = client_tls_context(ca=s.nats_tls_ca, cert=s.nats_tls_cert, key=s.nats_tls_key)
    return await Bus.connect(servers=[url], name=name, connect_timeout_s=5.0, tls=tls)


def _as_json(result: Verification) -> dict[str, object]:
    return {
        "intact": result.intact,
        "records_checked": result.records_checked,
        "first_broken_seq": result.first_broken_seq,
        "first_broken_stream_seq": result.first_broken_stream_seq,
        "kind": str(result.kind or ""),
        "problem": result.problem,
        "head": {"seq": result.head.seq, "hash": result.head.hash} if result.head else None,
    }


def _as_text(result: Verification) -> str:
    if result.intact:
        head = f"; head: record {result.head.seq} {result.head.hash}" if result.head else ""
        return f"intact: {result.records_checked} records checked{head}"
    return (
        f"BROKEN at record {result.first_broken_seq} (stream sequence "
        f"{result.first_broken_stream_seq}): {result.kind}: {result.problem}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
