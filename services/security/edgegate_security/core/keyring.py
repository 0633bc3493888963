"""This service's own signing keys: a ring kept in a directory that replicas share.

The newest key signs; older ones verify until every token they signed has
expired. The directory holds one PEM file per key (mode 0600) and an index;
changes are made under an exclusive lock and written atomically, so replicas
that start or rotate at the same moment never lose each other's keys, and a
read-only mount (a Kubernetes Secret) is read as it is.

A directory of PEM files with no index is a set of keys made elsewhere (a
Helm chart's Secret, which cannot compute a thumbprint to name them): every
`*.pem` is a key, the last by file name signs, none retires, and nothing is
ever written there. An admin rotates by adding a later-named PEM and removes
the old one once the tokens it signed have expired.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from edgegate_common.errors import FailedPrecondition, InvalidArgument, NotFound
from edgegate_common.logging import get_logger
from edgegate_security.core.keys import (
    ES256,
    RSA_MIN_BITS,
    PrivateKey,
    SigningKey,
    VerificationKey,
    checked_private_key,
    generate_key,
    key_from_jwk,
    with_kid,
)
from edgegate_security.secret_files import write_private

log = get_logger(__name__)

RETIRE_GRACE_S: Final = 300.0
"""How long past the last possible expiry an old key stays published: verifiers' leeway and skew."""
_INDEX_FILE: Final = "keyring.json"
_KID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


class KeyRing:
    """This service's own keys: the newest signs; older ones verify until they retire.

    `rotate()` starts signing with a new key at once, and keeps the old public
    key published (in `jwks()`) and usable for verification until every token
    it can have signed has expired: `max_token_ttl_s` plus `RETIRE_GRACE_S`.
    That is rotation without downtime. With a `directory`, keys are PEM files
    (mode 0600) next to a small index, so a restart keeps them.
    """

    def __init__(
        self,
        keys: Sequence[SigningKey],
        *,
        max_token_ttl_s: float,
        directory: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise InvalidArgument("a key ring needs at least one key")
        self.max_token_ttl_s = max_token_ttl_s
        self._directory = directory
        self._stamp: Hashable = None  # the ring on disk as last read or written (`_stamp`)
        self._clock = clock
        self._set(keys)

    @classmethod
    def generate(
        cls, *, alg: str = ES256, max_token_ttl_s: float, clock: Callable[[], float] = time.time
    ) -> KeyRing:
        """A ring with one fresh key, in memory only (lost on restart)."""
        return cls(
            [generate_key(alg=alg, clock=clock)], max_token_ttl_s=max_token_ttl_s, clock=clock
        )

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        alg: str = ES256,
        max_token_ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> KeyRing:
        """The ring saved in `directory`, or a new one (one `alg` key) saved there.

        Only a new ring, or one with keys that have retired since, is written:
        a read-only directory holding a ring is read as it is.

        A directory with `*.pem` files and no index holds mounted keys (see the
        module's docstring), read as they are whatever `alg` says. That is
        decided by what the directory holds, not by whether this process may
        write to it: root may write to a 0555 directory, a Secret volume's
        writability depends on the pod's user, and keys an admin put there
        must never be replaced by a generated ring (saving one deletes every
        PEM its index does not name).
        """
        index = directory / _INDEX_FILE
        if _holds_mounted_keys(directory):
            ring = cls(
                _load(directory), max_token_ttl_s=max_token_ttl_s, directory=directory, clock=clock
            )
            ring._stamp = _stamp(directory)
            return ring
        if index.exists() and not os.access(directory, os.W_OK):
            ring = cls(
                _load(directory), max_token_ttl_s=max_token_ttl_s, directory=directory, clock=clock
            )
            ring._stamp = _stamp(directory)
            return ring
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with _locked(directory):  # replicas starting together make one key, not one each
            keys = _load(directory) if index.exists() else [generate_key(alg=alg, clock=clock)]
            ring = cls(keys, max_token_ttl_s=max_token_ttl_s, directory=directory, clock=clock)
            live = [key for key in ring._keys if ring._live(key)]
            if not index.exists() or len(live) != len(keys):
                ring._keep(live)
            else:
                ring._stamp = _stamp(directory)
        return ring

    @property
    def signing_key(self) -> SigningKey:
        """The key new tokens are signed with."""
        return self._keys[-1]

    def get(self, kid: str) -> VerificationKey | None:
        """The public key named `kid`, unless it is unknown or retired."""
        key = self._verification.get(kid)
        if key is None or not self._live(self._by_kid[kid]):
            return None
        return key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The RFC 7517 JWK Set of every key that has not retired: public members only."""
        return {"keys": [dict(self._public[key.kid]) for key in self._keys if self._live(key)]}

    def rotate(self, *, alg: str | None = None) -> SigningKey:
        """Sign with a new key from now on; the old one retires once its tokens have expired."""
        with self._changing():
            now = self._clock()
            retires_at_s = now + self.max_token_ttl_s + RETIRE_GRACE_S
            old = replace(self.signing_key, retires_at_s=retires_at_s)
            new = generate_key(alg=alg or self.signing_key.alg, clock=self._clock)
            self._keep([*self._keys[:-1], old, new])
        return new

    def check_changeable(self) -> None:
        """FailedPrecondition when this ring's keys cannot change here (mounted PEM files).

        `rotate()` and `retire()` check it themselves; a caller that must record a change
        before making it (`edgegate keys rotate` files an audit record) asks first.
        """
        if self._directory is not None and _holds_mounted_keys(self._directory):
            raise FailedPrecondition(
                f"the keys in {self._directory} are mounted PEM files, changed only where they "
                "come from: add a later-named PEM to rotate, remove one to retire it"
            )

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the directory's lock and start from what is on disk, not what we last read."""
        if self._directory is None:
            yield
            return
        self.check_changeable()
        with _locked(self._directory):
            self.reload()
            yield

    def reload(self) -> bool:
        """Re-read the ring if another process changed it on disk; True when it did.

        Replicas share one key directory (a mounted Secret, or `edgegate keys
        rotate` run beside them): each picks up a rotation when a token names a
        kid it does not know, and every few seconds in the service, so a key
        rotated anywhere verifies everywhere without a restart. A few stats when
        nothing changed, so callers may ask often: for mounted keys, of the
        directory, its `..data` link (which a Secret update swaps) and each PEM,
        so an update is seen however the files were replaced. A directory that
        cannot be read (half restored, say) keeps the keys held, is logged, and
        is tried again on the next call.
        """
        if self._directory is None:
            return False
        try:
            stamp = _stamp(self._directory)
            if stamp == self._stamp:
                return False
            keys = _load(self._directory)
        except (OSError, FailedPrecondition) as exc:
            log.error("key ring reload failed; keeping the keys held", error=str(exc))
            return False
        self._set(keys)
        self._stamp = stamp
        log.info("key ring reloaded", kids=[key.kid for key in self._keys])
        return True

    def retire(self, kid: str) -> None:
        """Stop trusting an old key now (it leaked, say): its tokens are refused from here on."""
        with self._changing():
            if kid not in self._by_kid:
                raise NotFound(f"no key {kid!r} in the key ring")
            if kid == self.signing_key.kid:
                raise FailedPrecondition("the signing key cannot retire: rotate() first")
            self._set([key for key in self._keys if key.kid != kid])
            self._save()

    def _live(self, key: SigningKey) -> bool:
        return key.retires_at_s is None or self._clock() < key.retires_at_s

    def _set(self, keys: Sequence[SigningKey]) -> None:
        # Replaced whole, never mutated: a verify running meanwhile sees one consistent ring.
        self._keys = tuple(keys)
        self._by_kid = {key.kid: key for key in keys}
        self._public = {key.kid: key.public_jwk() for key in keys}
        self._verification = {kid: key_from_jwk(jwk) for kid, jwk in self._public.items()}

    def _keep(self, keys: Sequence[SigningKey]) -> None:
        """Keep those of `keys` that have not retired, and save the ring."""
        self._set([key for key in keys if self._live(key)])
        self._save()

    def _save(self) -> None:
        if self._directory is None:
            return
        for key in self._keys:
            path = self._directory / f"{key.kid}.pem"
            if not path.exists():
                write_private(path, _pem(key.private_key))
        index = {
            "keys": [
                {
                    "kid": k.kid,
                    "alg": k.alg,
                    "created_at_s": k.created_at_s,
                    "retires_at_s": k.retires_at_s,
                }
                for k in self._keys
            ]
        }
        write_private(self._directory / _INDEX_FILE, json.dumps(index, indent=2).encode())
        self._stamp = _stamp(self._directory)
        # Only after the index stops naming them: a retired private key is not kept around.
        for path in self._directory.glob("*.pem"):
            if path.stem not in self._by_kid:
                path.unlink()


def _pem(private_key: PrivateKey) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load(directory: Path) -> list[SigningKey]:
    """The ring's keys: by its index, or, without one, every PEM file in it."""
    if (directory / _INDEX_FILE).exists():
        return _load_indexed(directory)
    return _load_pem_files(directory)


def _holds_mounted_keys(directory: Path) -> bool:
    """PEM files and no index: keys made elsewhere, never written here."""
    return not (directory / _INDEX_FILE).exists() and bool(_pem_files(directory))


def _pem_files(directory: Path) -> list[Path]:
    """The `*.pem` files in `directory`, by name (dot files are a Secret's or ours: skipped)."""
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        directory / name
        for name in names
        if name.endswith(".pem") and not name.startswith(".") and (directory / name).is_file()
    ]


def _load_pem_files(directory: Path) -> list[SigningKey]:
    """Mounted keys: each PEM's kid is its thumbprint, created_at_s its mtime; none retires."""
    keys: dict[str, SigningKey] = {}
    for path in _pem_files(directory):
        try:
            private_key, alg = checked_private_key(
                serialization.load_pem_private_key(path.read_bytes(), password=None)
            )
            created_at_s = path.stat().st_mtime
        except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise FailedPrecondition(
                f"{path.name} in {directory} is not a signing key this service can use "
                f"(an unencrypted P-256, RSA of {RSA_MIN_BITS}+ bits or Ed25519 private key): {exc}"
            ) from exc
        key = with_kid(private_key, alg=alg, created_at_s=created_at_s)
        keys.pop(key.kid, None)  # the same key under two names: the later name's place
        keys[key.kid] = key
    if not keys:
        raise FailedPrecondition(f"no keys in {directory}: neither {_INDEX_FILE} nor PEM files")
    return list(keys.values())


def _load_indexed(directory: Path) -> list[SigningKey]:
    keys: list[SigningKey] = []
    try:
        index = json.loads((directory / _INDEX_FILE).read_bytes())
        for entry in index["keys"]:
            kid = str(entry["kid"])
            if not _KID.fullmatch(kid):  # it becomes a file name
                raise ValueError(f"kid {kid[:40]!r} is not a thumbprint")
            private_key, alg = checked_private_key(
                serialization.load_pem_private_key(
                    (directory / f"{kid}.pem").read_bytes(), password=None
                )
            )
            key = with_kid(private_key, alg=alg, created_at_s=float(entry["created_at_s"]))
            if key.kid != kid or key.alg != entry["alg"]:
                raise ValueError(f"{kid}.pem does not hold the key the index names")
            retires_at_s = entry["retires_at_s"]
            keys.append(
                replace(key, retires_at_s=None if retires_at_s is None else float(retires_at_s))
            )
    except (OSError, ValueError, KeyError, TypeError, UnsupportedAlgorithm) as exc:
        raise FailedPrecondition(f"the key ring in {directory} cannot be read: {exc}") from exc
    if not keys:
        raise FailedPrecondition(f"the key ring in {directory} lists no keys")
    return keys


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the directory, held across processes (flock on a lock file)."""
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _stamp(directory: Path) -> Hashable:
    """What changes whenever the ring on disk does; None when there is none.

    An index is replaced by a new file on each write. Mounted PEMs change with
    the directory (a file added, removed or renamed), its `..data` link (the
    atomic swap of a Kubernetes Secret update) or a file itself.
    """
    try:
        info = (directory / _INDEX_FILE).stat()
    except FileNotFoundError:
        pass
    else:
        return ("index", info.st_ino, info.st_mtime_ns, info.st_size)
    files = _pem_files(directory)
    if not files:
        return None
    try:
        data_link = (directory / "..data").lstat().st_ino
    except FileNotFoundError:
        data_link = None
    return (
        "files",
        directory.stat().st_mtime_ns,
        data_link,
        tuple(_file_stamp(path) for path in files),
    )


def _file_stamp(path: Path) -> tuple[str, int, int, int]:
    info = path.stat()  # through the Secret's links, to the file that holds the key now
    return (path.name, info.st_ino, info.st_mtime_ns, info.st_size)
