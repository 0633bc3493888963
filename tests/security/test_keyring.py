"""Signing keys a Helm chart made: one PEM per key in a read-only Secret mount, no index.

Helm's `genPrivateKey` writes "ecdsa" as SEC1 (EC PRIVATE KEY, P-256), "ed25519"
as PKCS#8 (PRIVATE KEY) and "rsa" as PKCS#1 (RSA PRIVATE KEY, 4096 bits); the
keys here are made in exactly those encodings. The mount is laid out as the
kubelet lays out a Secret volume (`..<time>/` holding the files, the `..data`
link to it, and a link per key to `..data/<key>`), and updated the way it
updates one: a new `..<time>/`, then `..data` swapped by a rename.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from support.harness import NatsLike
from support.security_support import AUDIENCE, ISSUER

from edgegate_common.errors import FailedPrecondition, Unauthenticated
from edgegate_common.local import ServiceProcess, free_port
from edgegate_protos.security.v1 import security_pb2 as pb
from edgegate_protos.security.v1 import security_pb2_grpc
from edgegate_security.core.keyring import KeyRing
from edgegate_security.core.keys import EDDSA, ES256, RS256, thumbprint
from edgegate_security.core.tokens import TokenIssuer, TokenPolicy, TokenVerifier

MAX_TTL_S = 3600.0
POLICY = TokenPolicy(issuers=frozenset({ISSUER}), audience=AUDIENCE)
PII_KEY = os.urandom(64)


def sec1_p256() -> bytes:
    """Helm's `genPrivateKey "ecdsa"`."""
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def pkcs8_ed25519() -> bytes:
    """Helm's `genPrivateKey "ed25519"`."""
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def pkcs1_rsa4096() -> bytes:
    """Helm's `genPrivateKey "rsa"` (made once: 4096-bit keys take a while)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=4096).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


class SecretMount:
    """A directory laid out and updated as the kubelet does a Secret volume; read-only."""

    def __init__(self, directory: Path, files: dict[str, bytes]) -> None:
        self.directory = directory
        directory.mkdir()
        self._generation = 0
        self._names: set[str] = set()
        self.update(files)

    def update(self, files: dict[str, bytes]) -> None:
        os.chmod(self.directory, 0o755)  # the kubelet (root) writes; the pod cannot
        self._generation += 1
        old = os.readlink(self.directory / "..data") if self._names else None
        fresh = f"..2025_03_01_12_00_{self._generation:02d}.{os.getpid()}"
        (self.directory / fresh).mkdir()
        for name, data in files.items():
            (self.directory / fresh / name).write_bytes(data)
            os.chmod(self.directory / fresh / name, 0o444)
        os.symlink(fresh, self.directory / "..data_tmp")
        os.rename(self.directory / "..data_tmp", self.directory / "..data")  # the atomic swap
        for name in set(files) - self._names:
            os.symlink(f"..data/{name}", self.directory / name)
        for name in self._names - set(files):
            os.unlink(self.directory / name)
        if old is not None:
            for path in (self.directory / old).iterdir():
                path.unlink()
            (self.directory / old).rmdir()
        self._names = set(files)
        os.chmod(self.directory, 0o555)

    def listing(self) -> list[str]:
        return sorted(os.listdir(self.directory))


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[SecretMount]]:
    made: list[SecretMount] = []
    yield made
    for mount in made:
        os.chmod(mount.directory, 0o755)  # so that pytest can remove it


@pytest.fixture
def mount(tmp_path: Path, mounts: list[SecretMount]) -> Any:
    def make(files: dict[str, bytes], name: str = "keys") -> SecretMount:
        made = SecretMount(tmp_path / name, files)
        mounts.append(made)
        return made

    return make


def issue(ring: KeyRing, **claims: Any) -> str:
    issuer = TokenIssuer(ring, issuer=ISSUER, audience=AUDIENCE)
    options = {"tenant": "acme", "subject": "alice", "scopes": ["infer:*"], "ttl_s": 600}
    return issuer.issue(**{**options, **claims}).token


async def verify(ring: KeyRing, token: str) -> str:
    return (await TokenVerifier(policy=POLICY, ring=ring).verify(token)).subject


# --- what a chart's Secret holds ------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "header", "alg"),
    [
        ("ecdsa", b"-----BEGIN EC PRIVATE KEY-----", ES256),
        ("ed25519", b"-----BEGIN PRIVATE KEY-----", EDDSA),
        ("rsa", b"-----BEGIN RSA PRIVATE KEY-----", RS256),
    ],
)
async def test_a_helm_made_key_in_a_read_only_mount_signs_and_verifies(
    encoding: str, header: bytes, alg: str, mount: Any, pkcs1_rsa4096: bytes
) -> None:
    pem = {"ecdsa": sec1_p256, "ed25519": pkcs8_ed25519, "rsa": lambda: pkcs1_rsa4096}[encoding]()
    assert pem.startswith(header)
    keys = mount({"signing.pem": pem, "pii.key": PII_KEY})
    before = keys.listing()

    ring = KeyRing.open(keys.directory, alg=ES256, max_token_ttl_s=MAX_TTL_S)  # alg: the key's

    (jwk,) = ring.jwks()["keys"]  # pii.key is no key of the ring
    assert (ring.signing_key.alg, jwk["alg"]) == (alg, alg)
    assert ring.signing_key.kid == jwk["kid"] == thumbprint(jwk)
    token = issue(ring)
    assert jwt.get_unverified_header(token)["kid"] == jwk["kid"]
    other_replica = KeyRing.open(keys.directory, max_token_ttl_s=MAX_TTL_S)
    assert await verify(other_replica, token) == "alice"
    assert keys.listing() == before  # nothing written: no index, no lock file


def test_a_writable_directory_of_pems_is_read_as_it_is_too(tmp_path: Path) -> None:
    """Root may write to a 0555 mount: the layout decides, and the admin's keys stay."""
    directory = tmp_path / "keys"
    directory.mkdir()
    (directory / "signing.pem").write_bytes(sec1_p256())

    ring = KeyRing.open(directory, alg=EDDSA, max_token_ttl_s=MAX_TTL_S)

    assert ring.signing_key.alg == ES256
    assert sorted(os.listdir(directory)) == ["signing.pem"]


def test_an_empty_writable_directory_still_gets_a_ring_of_its_own(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    ring = KeyRing.open(directory, alg=EDDSA, max_token_ttl_s=MAX_TTL_S)

    assert ring.signing_key.alg == EDDSA
    assert (directory / "keyring.json").exists()
    assert (directory / f"{ring.signing_key.kid}.pem").exists()
    assert KeyRing.open(directory, max_token_ttl_s=MAX_TTL_S).jwks() == ring.jwks()


async def test_the_last_pem_by_name_signs_and_every_one_verifies(mount: Any) -> None:
    old_pem = pkcs8_ed25519()
    keys = mount({"signing-2025-01.pem": old_pem})
    old_ring = KeyRing.open(keys.directory, max_token_ttl_s=MAX_TTL_S)
    old_token = issue(old_ring)
    keys = mount({"signing-2025-01.pem": old_pem, "signing-2025-02.pem": sec1_p256()}, "both")

    ring = KeyRing.open(keys.directory, max_token_ttl_s=MAX_TTL_S)

    assert ring.signing_key.alg == ES256
    assert [k["kid"] for k in ring.jwks()["keys"]] == [
        old_ring.signing_key.kid,
        ring.signing_key.kid,
    ]
    assert await verify(ring, old_token) == "alice"
    assert jwt.get_unverified_header(issue(ring))["kid"] == ring.signing_key.kid


# --- rotation through the Secret ------------------------------------------------------------


async def test_reload_follows_the_secret_as_the_admin_rotates(mount: Any) -> None:
    first, second = sec1_p256(), pkcs8_ed25519()
    keys = mount({"signing-1.pem": first, "pii.key": PII_KEY})
    ring = KeyRing.open(keys.directory, max_token_ttl_s=MAX_TTL_S)
    first_kid = ring.signing_key.kid
    old_token = issue(ring)
    assert not ring.reload()  # nothing changed

    keys.update({"signing-1.pem": first, "signing-2.pem": second, "pii.key": PII_KEY})
    assert ring.reload()
    assert ring.signing_key.alg == EDDSA
    new_token = issue(ring)
    assert jwt.get_unverified_header(new_token)["kid"] == ring.signing_key.kid != first_kid
    assert await verify(ring, old_token) == "alice"  # until the old key leaves the Secret

    keys.update({"signing-2.pem": second, "pii.key": PII_KEY})  # after the tokens' max TTL
    assert ring.reload()
    assert await verify(ring, new_token) == "alice"
    with pytest.raises(Unauthenticated) as refused:
        await verify(ring, old_token)
    assert refused.value.details["reason"] == "kid_unknown"
    assert not ring.reload()


async def test_a_key_replaced_under_the_same_name_is_picked_up(mount: Any) -> None:
    keys = mount({"signing.pem": sec1_p256()})
    ring = KeyRing.open(keys.directory, max_token_ttl_s=MAX_TTL_S)
    old_kid = ring.signing_key.kid

    keys.update({"signing.pem": sec1_p256()})

    assert ring.reload()
    assert ring.signing_key.kid != old_kid
    assert [k["kid"] for k in ring.jwks()["keys"]] == [ring.signing_key.kid]


async def test_a_secret_emptied_of_keys_keeps_the_keys_held(mount: Any) -> None:
    keys = mount({"signing.pem": sec1_p256(), "pii.key": PII_KEY})
    ring = KeyRing.open(keys.directory, max_token_ttl_s=MAX_TTL_S)
    token = issue(ring)

    keys.update({"pii.key": PII_KEY})

    assert not ring.reload()
    assert await verify(ring, token) == "alice"


def test_a_mounted_ring_is_not_rotated_or_retired_here(mount: Any) -> None:
    keys = mount({"a.pem": pkcs8_ed25519(), "b.pem": pkcs8_ed25519()})
    ring = KeyRing.open(keys.directory, max_token_ttl_s=MAX_TTL_S)
    before = keys.listing()

    with pytest.raises(FailedPrecondition, match="add a later-named PEM"):
        ring.rotate()
    with pytest.raises(FailedPrecondition, match="add a later-named PEM"):
        ring.retire(ring.jwks()["keys"][0]["kid"])
    assert keys.listing() == before
    assert len(ring.jwks()["keys"]) == 2


# --- what is not a key --------------------------------------------------------------------


def _public_pem() -> bytes:
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _p384_pem() -> bytes:
    return ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _encrypted_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(_public_pem, id="a public key"),
        pytest.param(_p384_pem, id="P-384"),
        pytest.param(_encrypted_pem, id="encrypted"),
        pytest.param(
            lambda: b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", id="junk"
        ),
        pytest.param(lambda: b"", id="empty"),
    ],
)
def test_a_pem_that_is_no_usable_key_is_refused_by_name(bad: Any, mount: Any) -> None:
    keys = mount({"a-good.pem": sec1_p256(), "b-bad.pem": bad(), "pii.key": PII_KEY})

    with pytest.raises(FailedPrecondition, match=r"b-bad\.pem in .* is not a signing key"):
        KeyRing.open(keys.directory, max_token_ttl_s=MAX_TTL_S)


def test_small_rsa_is_refused_by_name(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    (directory / "weak.pem").write_bytes(
        weak.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(FailedPrecondition, match=r"weak\.pem .*RSAPrivateKey cannot sign"):
        KeyRing.open(directory, max_token_ttl_s=MAX_TTL_S)
    assert os.listdir(directory) == ["weak.pem"]  # and nothing generated beside it


# --- the admin path the chart's NOTES give, and the service ---------------------------------


def tools(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgegate_security.tools", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_token_issue_signs_with_the_mounted_key_and_rotate_says_how(mount: Any) -> None:
    keys = mount({"signing.pem": sec1_p256(), "pii.key": PII_KEY})
    before = keys.listing()
    ring = KeyRing.open(keys.directory, max_token_ttl_s=MAX_TTL_S)

    issued = tools(
        "token", "issue", "--keys-dir", str(keys.directory), "--no-audit",
        "--tenant", "acme", "--sub", "alice", "--scope", "infer:*",
        "--issuer", ISSUER, "--audience", AUDIENCE,
    )  # fmt: skip
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert jwt.get_unverified_header(token)["kid"] == ring.signing_key.kid
    assert asyncio.run(verify(ring, token)) == "alice"

    rotated = tools("keys", "rotate", "--keys-dir", str(keys.directory), "--no-audit")
    assert rotated.returncode == 2
    assert "add a later-named PEM" in rotated.stderr
    # With auditing on, it refuses before it files a record (no NATS needed to say so).
    nowhere = f"nats://127.0.0.1:{free_port()}"
    audited = tools("keys", "rotate", "--keys-dir", str(keys.directory), "--nats-url", nowhere)
    assert audited.returncode == 2
    assert "add a later-named PEM" in audited.stderr
    assert keys.listing() == before


@pytest.mark.slow
async def test_the_service_verifies_tokens_signed_with_the_mounted_key(
    mount: Any, shared_nats: NatsLike, tmp_path: Path
) -> None:
    """The chart's layout: keys_dir and the PII secrets file in one read-only Secret."""
    keys = mount({"signing.pem": sec1_p256(), "pii.key": PII_KEY})
    before = keys.listing()
    env = {
        "EDGEGATE_SECURITY_KEYS_DIR": str(keys.directory),
        "EDGEGATE_SECURITY_PII_SECRETS_FILE": str(keys.directory / "pii.key"),
    }
    service = ServiceProcess(
        "security",
        nats_url=shared_nats.url,
        grpc_port=free_port(),
        metrics_port=0,
        log_file=tmp_path / "security.log",
        env=env,
    )
    service.start()
    try:
        await service.wait_serving(timeout_s=90)
        issued = tools(
            "token", "issue", "--no-audit", "--tenant", "acme", "--sub", "bob",
            "--scope", "infer:*", env=env,
        )  # fmt: skip
        assert issued.returncode == 0, issued.stderr
        async with grpc.aio.insecure_channel(service.target) as channel:
            stub = security_pb2_grpc.SecurityStub(channel)
            answer = await stub.Authenticate(pb.AuthenticateRequest(token=issued.stdout.strip()))
    finally:
        service.stop()
    assert (answer.principal.tenant, answer.principal.subject) == ("acme", "bob")
    assert keys.listing() == before
