"""Issuing and verifying tokens: algorithms, key rings, rotation, an identity provider's JWKS."""

from __future__ import annotations

import contextlib
import http.server
import json
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.security_support import AUDIENCE, ISSUER, NOW_S, FakeClock

from edgegate_common.errors import (
    FailedPrecondition,
    InvalidArgument,
    Unauthenticated,
    Unavailable,
)
from edgegate_security.adapters.jwks_client import HttpJwksClient
from edgegate_security.core.jwks import RemoteJwks
from edgegate_security.core.keyring import RETIRE_GRACE_S, KeyRing
from edgegate_security.core.keys import EDDSA, ES256, RS256, parse_jwks
from edgegate_security.core.tokens import TokenIssuer, TokenPolicy, TokenVerifier

MAX_TTL_S = 3600.0
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
POLICY = TokenPolicy(issuers=frozenset({ISSUER}), audience=AUDIENCE)


@pytest.fixture(scope="module")
def rsa_ring() -> KeyRing:
    # RSA key generation is slow: once per module.
    return KeyRing.generate(alg=RS256, max_token_ttl_s=MAX_TTL_S, clock=FakeClock())


def issue(ring: KeyRing, clock: FakeClock, **overrides: Any) -> str:
    issuer = TokenIssuer(ring, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    options: dict[str, Any] = {
        "tenant": "acme",
        "subject": "alice",
        "scopes": ["infer:*", "tasks:read"],
        "ttl_s": 600,
    }
    return issuer.issue(**{**options, **overrides}).token


def reason(error: pytest.ExceptionInfo[Exception]) -> str:
    return error.value.details["reason"] if isinstance(error.value, Unauthenticated) else ""


@pytest.mark.parametrize("alg", [ES256, RS256, EDDSA])
async def test_a_token_issued_with_each_algorithm_verifies(alg: str, rsa_ring: KeyRing) -> None:
    clock = FakeClock()
    ring = rsa_ring if alg == RS256 else KeyRing.generate(alg=alg, max_token_ttl_s=MAX_TTL_S)
    issued = TokenIssuer(ring, issuer=ISSUER, audience=AUDIENCE, clock=clock).issue(
        tenant="acme", subject="alice", scopes=["infer:*", "tasks:read"], ttl_s=600
    )
    verifier = TokenVerifier(policy=POLICY, ring=ring, clock=clock)

    principal = await verifier.verify(issued.token)

    assert principal == issued.principal
    assert principal.tenant == "acme"
    assert principal.subject == "alice"
    assert principal.scopes == {"infer:*", "tasks:read"}
    assert principal.expires_at == datetime.fromtimestamp(NOW_S + 600, UTC)
    assert jwt.get_unverified_header(issued.token) == {
        "alg": alg,
        "kid": ring.signing_key.kid,
        "typ": "JWT",
    }


def test_issued_tokens_carry_every_claim_and_a_fresh_jti() -> None:
    clock = FakeClock()
    ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S)
    first, second = (issue(ring, clock, scopes=["tasks:write", "admin"]) for _ in range(2))

    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims.keys() == {"iss", "aud", "sub", "tenant", "scope", "iat", "exp", "jti"}
    assert claims["scope"] == "admin tasks:write"
    assert (claims["iss"], claims["aud"]) == (ISSUER, AUDIENCE)
    assert claims["exp"] - claims["iat"] == 600
    assert len(claims["jti"]) >= 16
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"ttl_s": MAX_TTL_S + 1},
        {"ttl_s": 0},
        {"tenant": ""},
        {"subject": ""},
        {"scopes": ["tasks:delete"]},
    ],
)
def test_the_issuer_refuses_bad_requests(overrides: dict[str, Any]) -> None:
    ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S)

    with pytest.raises(InvalidArgument):
        issue(ring, FakeClock(), **overrides)


async def test_scopes_may_come_as_a_list(rsa_ring: KeyRing) -> None:
    claims = {
        "iss": ISSUER,
        "aud": [AUDIENCE, "other"],
        "sub": "bob",
        "tenant": "acme",
        "scope": ["tasks:read", "infer:bge-*"],
        "iat": int(NOW_S),
        "exp": int(NOW_S) + 60,
    }
    key = rsa_ring.signing_key
    token = jwt.encode(claims, key.private_key, algorithm=RS256, headers={"kid": key.kid})
    verifier = TokenVerifier(policy=POLICY, ring=rsa_ring, clock=FakeClock())

    principal = await verifier.verify(token)

    assert principal.scopes == {"tasks:read", "infer:bge-*"}
    assert principal.token_id == ""  # no jti: allowed, recorded as empty


@pytest.mark.parametrize("alg", [ES256, RS256, EDDSA])
def test_the_jwks_holds_public_members_only(alg: str, rsa_ring: KeyRing) -> None:
    ring = rsa_ring if alg == RS256 else KeyRing.generate(alg=alg, max_token_ttl_s=MAX_TTL_S)

    (jwk,) = ring.jwks()["keys"]

    assert not PRIVATE_MEMBERS & jwk.keys()
    assert jwk["kid"] == ring.signing_key.kid
    assert (jwk["alg"], jwk["use"]) == (alg, "sig")
    assert parse_jwks(json.dumps(ring.jwks()), source="test").keys() == {jwk["kid"]}


async def test_a_token_signed_before_rotation_verifies_after_it_until_the_key_retires() -> None:
    clock = FakeClock()
    ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S, clock=clock)
    verifier = TokenVerifier(policy=POLICY, ring=ring, clock=clock)
    old_kid = ring.signing_key.kid
    old_token = issue(ring, clock, ttl_s=MAX_TTL_S)

    new_key = ring.rotate(alg=EDDSA)

    assert new_key.kid != old_kid
    assert ring.signing_key == new_key
    assert {k["kid"] for k in ring.jwks()["keys"]} == {old_kid, new_key.kid}
    assert (await verifier.verify(old_token)).tenant == "acme"
    assert jwt.get_unverified_header(issue(ring, clock))["kid"] == new_key.kid

    clock.now_s += MAX_TTL_S + RETIRE_GRACE_S  # every token of the old key has expired by now
    assert {k["kid"] for k in ring.jwks()["keys"]} == {new_key.kid}
    with pytest.raises(Unauthenticated) as refused:
        await verifier.verify(old_token)
    assert reason(refused) == "kid_unknown"


async def test_a_retired_key_is_refused_at_once() -> None:
    clock = FakeClock()
    ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S, clock=clock)
    verifier = TokenVerifier(policy=POLICY, ring=ring, clock=clock)
    old_kid = ring.signing_key.kid
    old_token = issue(ring, clock)
    with pytest.raises(FailedPrecondition):
        ring.retire(old_kid)  # the signing key itself cannot retire

    ring.rotate()
    ring.retire(old_kid)

    with pytest.raises(Unauthenticated) as refused:
        await verifier.verify(old_token)
    assert reason(refused) == "kid_unknown"
    assert old_kid not in {k["kid"] for k in ring.jwks()["keys"]}


async def test_a_key_ring_in_a_directory_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock()
    directory = tmp_path / "keys"
    ring = KeyRing.open(directory, alg=EDDSA, max_token_ttl_s=MAX_TTL_S, clock=clock)
    old_kid = ring.signing_key.kid
    old_token = issue(ring, clock)
    ring.rotate()

    reopened = KeyRing.open(directory, max_token_ttl_s=MAX_TTL_S, clock=clock)

    assert reopened.signing_key.kid == ring.signing_key.kid
    assert reopened.jwks() == ring.jwks()
    verifier = TokenVerifier(policy=POLICY, ring=reopened, clock=clock)
    assert (await verifier.verify(old_token)).subject == "alice"
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name

    reopened.retire(old_kid)
    assert not (directory / f"{old_kid}.pem").exists()  # no retired private key lingers


def test_a_damaged_key_directory_is_refused(tmp_path: Path) -> None:
    one, other = tmp_path / "one", tmp_path / "other"
    kid = KeyRing.open(one, max_token_ttl_s=MAX_TTL_S).signing_key.kid
    other_kid = KeyRing.open(other, max_token_ttl_s=MAX_TTL_S).signing_key.kid
    (one / f"{kid}.pem").write_bytes((other / f"{other_kid}.pem").read_bytes())

    with pytest.raises(FailedPrecondition, match="does not hold the key"):
        KeyRing.open(one, max_token_ttl_s=MAX_TTL_S)


async def test_hs256_verifies_only_when_enabled() -> None:
    secret = b"s" * 32
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "dev",
        "tenant": "acme",
        "iat": int(NOW_S),
        "exp": int(NOW_S) + 60,
    }
    token = jwt.encode(claims, secret, algorithm="HS256")  # no kid: selects the dev key
    ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S)
    enabled = TokenPolicy(issuers=frozenset({ISSUER}), audience=AUDIENCE, hs256_secret=secret)

    principal = await TokenVerifier(policy=enabled, clock=FakeClock()).verify(token)
    assert principal.subject == "dev"

    with pytest.raises(Unauthenticated) as refused:
        await TokenVerifier(policy=POLICY, ring=ring, clock=FakeClock()).verify(token)
    assert reason(refused) == "alg_not_allowed"

    wrong_secret = jwt.encode(claims, b"t" * 32, algorithm="HS256")
    with pytest.raises(Unauthenticated) as refused:
        await TokenVerifier(policy=enabled, clock=FakeClock()).verify(wrong_secret)
    assert reason(refused) == "signature_invalid"


def test_a_short_hs256_secret_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="at least 32 bytes"):
        TokenVerifier(
            policy=TokenPolicy(issuers=frozenset({ISSUER}), audience=AUDIENCE, hs256_secret=b"x")
        )


# --- an identity provider's JWKS ---------------------------------------------------------


class StaticSource:
    """A JwksSource whose document the test sets, counting fetches."""

    location = "test://jwks"

    def __init__(self, document: object) -> None:
        self.document = document
        self.fetches = 0

    async def fetch_jwks(self) -> bytes:
        self.fetches += 1
        if isinstance(self.document, Exception):
            raise self.document
        return (
            self.document
            if isinstance(self.document, bytes)
            else json.dumps(self.document).encode()
        )


GOOD_JWK = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'{"keys": {}}',
        b"[" * 100_000,  # deeper than the JSON parser recurses
        {"keys": []},
        {"keys": [None, 1, "x", [], {}]},
        {"keys": [{"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"}]},  # 17-bit RSA
        {"keys": [{"kty": "EC", "kid": "e", "crv": "P-256", "x": "AA", "y": "AA"}]},
        {"keys": [{"kty": "EC", "kid": "e", "crv": "P-384", "x": "AA", "y": "AA"}]},
        {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]},  # never a symmetric key
        {"keys": [{**GOOD_JWK, "kid": "k", "alg": "RS256"}]},  # alg that does not fit
        {"keys": [{**GOOD_JWK, "kid": "k", "use": "enc"}]},
        {"keys": [{**GOOD_JWK, "kid": 7}]},
        {"keys": [{**GOOD_JWK, "kid": "k", "x": 12}]},
        {"keys": [GOOD_JWK]},  # no kid: no token could name it
    ],
)
def test_a_jwks_without_usable_keys_is_unavailable(document: object) -> None:
    raw = document if isinstance(document, bytes) else json.dumps(document).encode()

    with pytest.raises(Unavailable) as caught:
        parse_jwks(raw, source="test")

    assert caught.value.details == {"reason": "jwks_unavailable"}


def test_unusable_keys_are_skipped_and_the_rest_kept(rsa_ring: KeyRing) -> None:
    good = rsa_ring.jwks()["keys"][0]
    document = {"keys": [{"kty": "EC", "kid": "bad"}, "junk", good, {**good, "n": "AQAB"}]}

    keys = parse_jwks(json.dumps(document), source="test")

    assert keys.keys() == {good["kid"]}
    assert keys[good["kid"]].alg == RS256


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=10,
)
JWK_LIKE = st.fixed_dictionaries(
    {"kty": st.sampled_from(["RSA", "EC", "OKP", "oct"]), "kid": st.text()},
    optional={
        member: JSON_VALUES | st.text(alphabet="AQab-_")
        for member in ("crv", "x", "y", "n", "e", "alg", "use", "d")
    },
)


@given(st.one_of(JSON_VALUES, JWK_LIKE))
@settings(database=None, max_examples=300)
def test_no_garbage_jwks_raises_anything_but_unavailable(keys: object) -> None:
    for document in ({"keys": keys}, {"keys": [keys]}, keys):
        with contextlib.suppress(Unavailable):
            parse_jwks(json.dumps(document), source="hypothesis")


async def test_a_failed_refresh_keeps_the_keys_already_held() -> None:
    clock = FakeClock()
    ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S, clock=clock)
    source = StaticSource(ring.jwks())
    remote = RemoteJwks(source, ttl_s=300, refetch_interval_s=30, clock=clock)
    verifier = TokenVerifier(policy=POLICY, remote=remote, clock=clock)
    token = issue(ring, clock)
    await verifier.verify(token)

    source.document = b"<html>502 Bad Gateway</html>"
    clock.now_s += 301  # the cache is stale: the next verify refreshes and that fails
    assert (await verifier.verify(token)).tenant == "acme"
    assert source.fetches == 2


async def test_no_jwks_at_all_is_unavailable() -> None:
    clock = FakeClock()
    source = StaticSource(Unavailable("down", details={"reason": "jwks_unavailable"}))
    remote = RemoteJwks(source, refetch_interval_s=30, clock=clock)
    verifier = TokenVerifier(policy=POLICY, remote=remote, clock=clock)
    token = issue(KeyRing.generate(max_token_ttl_s=MAX_TTL_S), clock)

    for _ in range(3):
        with pytest.raises(Unavailable) as caught:
            await verifier.verify(token)
        assert caught.value.details == {"reason": "jwks_unavailable"}
    assert source.fetches == 1  # failures are retried no faster than refetch_interval_s


class JwksServer:
    """A real HTTP server on a free port, serving whatever `document` holds."""

    def __init__(self) -> None:
        self.document: bytes = b"{}"
        self.status = 200
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                self.send_response(owner.status)
                if owner.status in (301, 302):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(owner.document)))
                self.end_headers()
                self.wfile.write(owner.document)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def serve(self, jwks: dict[str, Any]) -> None:
        self.document = json.dumps(jwks).encode()

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    with JwksServer() as server:
        yield server


async def test_an_idp_rotation_is_picked_up_with_one_refetch(idp: JwksServer) -> None:
    clock = FakeClock()
    idp_ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S, clock=clock)
    idp.serve(idp_ring.jwks())
    remote = RemoteJwks(
        HttpJwksClient(idp.url, allow_http=True), ttl_s=300, refetch_interval_s=30, clock=clock
    )
    verifier = TokenVerifier(policy=POLICY, remote=remote, clock=clock)
    old_token = issue(idp_ring, clock)
    assert (await verifier.verify(old_token)).subject == "alice"
    assert idp.requests == 1

    idp_ring.rotate()
    idp.serve(idp_ring.jwks())
    clock.now_s += 31
    new_token = issue(idp_ring, clock, subject="bob")

    assert (await verifier.verify(new_token)).subject == "bob"
    assert idp.requests == 2
    assert (await verifier.verify(old_token)).subject == "alice"  # both keys held now
    assert (await verifier.verify(new_token)).subject == "bob"
    assert idp.requests == 2


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, b"{}"), (302, b""), (200, b'{"keys": "nope"}'), (200, b'{"keys": []}' + b" " * 5000)],
)
async def test_an_idp_that_misbehaves_is_unavailable(
    idp: JwksServer, status: int, body: bytes
) -> None:
    idp.status, idp.document = status, body
    client = HttpJwksClient(idp.url, allow_http=True, max_bytes=4096)
    remote = RemoteJwks(client, clock=FakeClock())

    with pytest.raises(Unavailable) as caught:
        await remote.get("any")

    assert caught.value.details == {"reason": "jwks_unavailable"}
    assert idp.requests == 1  # redirects are not followed


@pytest.mark.parametrize(
    "url", ["http://idp.test/jwks", "file:///etc/passwd", "ftp://idp.test/jwks", "https:///x"]
)
def test_the_jwks_client_fetches_https_only(url: str) -> None:
    with pytest.raises(InvalidArgument):
        HttpJwksClient(url)


# -- the verified-token cache ------------------------------------------------


async def test_a_remembered_token_is_checked_again_once_its_key_retires() -> None:
    clock = FakeClock()
    ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S, clock=clock)
    verifier = TokenVerifier(policy=POLICY, ring=ring, clock=clock)
    old_kid = ring.signing_key.kid
    token = issue(ring, clock)
    assert (await verifier.verify(token)).subject == "alice"  # remembered now

    ring.rotate()
    assert (await verifier.verify(token)).subject == "alice"  # rotation alone: still trusted
    ring.retire(old_kid)

    with pytest.raises(Unauthenticated) as refused:
        await verifier.verify(token)
    assert reason(refused) == "kid_unknown"


async def test_a_remembered_token_still_expires() -> None:
    clock = FakeClock()
    ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S, clock=clock)
    verifier = TokenVerifier(policy=POLICY, ring=ring, clock=clock)
    token = issue(ring, clock, ttl_s=60)
    await verifier.verify(token)

    clock.now_s += 60 + POLICY.leeway_s - 1
    assert (await verifier.verify(token)).subject == "alice"  # within the leeway
    clock.now_s += 1
    with pytest.raises(Unauthenticated) as refused:
        await verifier.verify(token)
    assert reason(refused) == "token_expired"


async def test_a_remembered_idp_token_is_checked_again_once_the_jwks_goes_stale(
    idp: JwksServer,
) -> None:
    clock = FakeClock()
    idp_ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S, clock=clock)
    idp.serve(idp_ring.jwks())
    remote = RemoteJwks(
        HttpJwksClient(idp.url, allow_http=True), ttl_s=300, refetch_interval_s=30, clock=clock
    )
    verifier = TokenVerifier(policy=POLICY, remote=remote, clock=clock)
    token = issue(idp_ring, clock, ttl_s=MAX_TTL_S)
    await verifier.verify(token)
    await verifier.verify(token)
    assert idp.requests == 1

    # The IdP replaced its key (an empty set would count as a failed fetch: keys kept).
    idp.serve(KeyRing.generate(max_token_ttl_s=MAX_TTL_S, clock=clock).jwks())
    clock.now_s += 301
    with pytest.raises(Unauthenticated) as refused:
        await verifier.verify(token)
    assert reason(refused) == "kid_unknown"


async def test_the_cache_is_bounded_and_may_be_off() -> None:
    clock = FakeClock()
    ring = KeyRing.generate(max_token_ttl_s=MAX_TTL_S, clock=clock)
    small = TokenVerifier(policy=POLICY, ring=ring, clock=clock, cache_size=2)
    off = TokenVerifier(policy=POLICY, ring=ring, clock=clock, cache_size=0)
    tokens = [issue(ring, clock, subject=f"user{i}") for i in range(5)]
    for token in tokens:
        assert (await small.verify(token)).subject == (await off.verify(token)).subject
    assert len(small._verified) == 2 and not off._verified
    assert list(small._verified) == tokens[-2:]  # the oldest went first


async def test_a_rotation_by_another_process_verifies_and_signs_here(tmp_path: Path) -> None:
    clock = FakeClock()
    here = KeyRing.open(tmp_path, max_token_ttl_s=MAX_TTL_S, clock=clock)
    there = KeyRing.open(tmp_path, max_token_ttl_s=MAX_TTL_S, clock=clock)  # another replica
    verifier = TokenVerifier(policy=POLICY, ring=here, clock=clock)
    old_kid = here.signing_key.kid
    old_token = issue(here, clock)
    await verifier.verify(old_token)

    new_kid = there.rotate(alg=EDDSA).kid
    new_token = issue(there, clock)  # its kid is unknown here: the ring is re-read once

    assert (await verifier.verify(new_token)).subject == "alice"
    assert here.signing_key.kid == new_kid
    assert jwt.get_unverified_header(issue(here, clock))["kid"] == new_kid
    assert here.reload() is False  # nothing changed since: a stat, no read

    there.retire(old_kid)
    assert here.reload() is True  # what the service does every keys_reload_s
    with pytest.raises(Unauthenticated) as refused:
        await verifier.verify(old_token)
    assert reason(refused) == "kid_unknown"


async def test_a_damaged_shared_ring_keeps_the_keys_held(tmp_path: Path) -> None:
    clock = FakeClock()
    here = KeyRing.open(tmp_path, max_token_ttl_s=MAX_TTL_S, clock=clock)
    verifier = TokenVerifier(policy=POLICY, ring=here, clock=clock)
    old_token = issue(here, clock)
    there = KeyRing.open(tmp_path, max_token_ttl_s=MAX_TTL_S, clock=clock)
    there.rotate()
    new_token = issue(there, clock)
    (tmp_path / "keyring.json").write_text("{ half-restored")

    with pytest.raises(Unauthenticated) as refused:  # a refusal, not a crash
        await verifier.verify(new_token)
    assert reason(refused) == "kid_unknown"
    assert (await verifier.verify(old_token)).subject == "alice"


def test_replicas_starting_together_share_one_key(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path;"
        "from edgegate_security.core.keyring import KeyRing;"
        "print(KeyRing.open(Path(sys.argv[1]), max_token_ttl_s=60).signing_key.kid)"
    )
    starts = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    kids = {proc.communicate(timeout=60)[0].decode().strip() for proc in starts}
    assert len(kids) == 1 and all(kids)
    assert [p.stem for p in tmp_path.glob("*.pem")] == list(kids)


def test_opening_a_ring_rewrites_nothing_and_rotations_do_not_clobber(tmp_path: Path) -> None:
    clock = FakeClock()
    first = KeyRing.open(tmp_path, max_token_ttl_s=MAX_TTL_S, clock=clock)
    index = tmp_path / "keyring.json"
    before = index.stat()
    second = KeyRing.open(tmp_path, max_token_ttl_s=MAX_TTL_S, clock=clock)
    assert (index.stat().st_ino, index.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    a = first.rotate()
    b = second.rotate()  # second never saw a: it re-reads under the lock before changing
    assert second.signing_key == b
    assert {a.kid, b.kid} <= {key["kid"] for key in second.jwks()["keys"]}
    first.reload()
    assert {a.kid, b.kid} <= {key["kid"] for key in first.jwks()["keys"]}
