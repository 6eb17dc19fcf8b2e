"""Ed25519 keys: making them, loading them, naming them, signing with them.

The writer holds one private key (the gateway reads its PEM text from an env var or a
file and hands it over); a verifier holds public keys only, possibly several: after a
key rotation, older checkpoints name the old key. A key is named by its `key_id`, the
first 16 hex digits of the SHA-256 of the raw 32-byte public key, which every
checkpoint carries, so the verifier picks the key without trying each.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _as_bytes(pem: str | bytes) -> bytes:
    return pem.encode("ascii") if isinstance(pem, str) else pem


def load_private_key(pem: str | bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS8, unencrypted), as text or bytes.

    Raises ValueError, without echoing the key, when it is not one.
    """
    try:
        key = serialization.load_pem_private_key(_as_bytes(pem).strip() + b"\n", password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError("not an unencrypted PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"the audit signing key must be Ed25519, not {type(key).__name__}")
    return key


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo)."""
    try:
        key = serialization.load_pem_public_key(_as_bytes(pem).strip() + b"\n")
    except (ValueError, TypeError) as exc:
        raise ValueError("not a PEM public key") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"an audit public key must be Ed25519, not {type(key).__name__}")
    return key


def load_public_key_file(path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """The public key in a PEM file (what `--public-key FILE` names)."""
    return load_public_key(Path(path).read_bytes())


def private_key_pem(key: Ed25519PrivateKey) -> str:
    """PEM text (PKCS8, unencrypted) of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def _public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_key_pem(private_key_pem: str | bytes) -> str:
    """The public key PEM for a private key PEM (`seawall audit pubkey`)."""
    return _public_pem(load_private_key(private_key_pem).public_key())


def generate_keypair(
    private_path: str | os.PathLike[str],
    public_path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
) -> str:
    """Make a new key pair: the private key's PEM written with mode 0600 (created so,
    never readable by others even for a moment), the public key's PEM beside it.
    Returns the key id. Refuses to replace an existing private key unless `overwrite`:
    losing a signing key loses nothing written, but a silently replaced one makes the
    verifier's public key file stale.
    """
    key = Ed25519PrivateKey.generate()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    fd = os.open(private_path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, private_key_pem(key).encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    Path(public_path).write_text(_public_pem(key.public_key()), encoding="ascii")
    return key_id(key.public_key())


class Signer:
    """Signs checkpoint payloads with one private key, naming it by key id."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.key_id = key_id(self.public_key)

    @classmethod
    def from_pem(cls, pem: str | bytes) -> Signer:
        return cls(load_private_key(pem))

    @classmethod
    def generate(cls) -> Signer:
        """A signer with a fresh key (tests, benchmarks)."""
        return cls(Ed25519PrivateKey.generate())

    def sign(self, payload: bytes) -> str:
        """Standard base64 of the Ed25519 signature of `payload`."""
        return base64.b64encode(self._key.sign(payload)).decode("ascii")

    def public_key_pem(self) -> str:
        return _public_pem(self.public_key)


class KeyRing:
    """The public keys a verifier trusts, by key id (one per key ever used to sign:
    keep the old public keys after a rotation)."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for key in keys:
            self.add(key)

    @classmethod
    def from_files(cls, paths: Iterable[str | os.PathLike[str]]) -> KeyRing:
        return cls(load_public_key_file(path) for path in paths)

    def add(self, key: Ed25519PublicKey) -> str:
        kid = key_id(key)
        self._keys[kid] = key
        return kid

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def verify(self, kid: str, payload: bytes, signature: bytes) -> bool:
        """True when `signature` is the key `kid`'s over `payload` (the key must be in
        the ring: check `kid in ring` first to tell an unknown key from a bad sig)."""
        key = self._keys.get(kid)
        if key is None:
            return False
        try:
            key.verify(signature, payload)
        except InvalidSignature:
            return False
        return True
