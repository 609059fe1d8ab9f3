"""Ed25519 key files: written 0600, read back, and the public key's wire form."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from datavalley.errors import Conflict, InvalidInput, NotFound


def write_private_key(path: Path, key: Ed25519PrivateKey, *, overwrite: bool = False) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM, created 0600 (never readable by others, not even briefly).

    Raises :class:`Conflict` if the file exists and ``overwrite`` is false.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise Conflict(f"key file {path} already exists; refusing to overwrite it", path=str(path)) from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    os.chmod(path, 0o600)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read an Ed25519 private key PEM (raises :class:`NotFound` / :class:`InvalidInput`)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFound(
            f"key file {path} does not exist (is the exchange home initialised? run `datavalley init`)",
            path=str(path),
        ) from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as exc:
        raise InvalidInput(f"key file {path} is not a PEM private key: {exc}", path=str(path)) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(
            f"key file {path} holds a {type(key).__name__}, not an Ed25519 key", path=str(path)
        )
    return key


def public_key_b64(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Base64 of the 32 raw public key bytes (the wire form of a participant key)."""
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def decode_public_key(value: str) -> Ed25519PublicKey:
    """Parse base64 raw Ed25519 public key bytes (raises :class:`InvalidInput`)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise InvalidInput("public_key is not valid base64", field="public_key") from exc
    if len(raw) != 32:
        raise InvalidInput(f"public_key must be 32 bytes, got {len(raw)}", field="public_key")
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(public_key: str) -> str:
    """``sha256:<hex>`` of the raw public key bytes."""
    return "sha256:" + hashlib.sha256(base64.b64decode(public_key)).hexdigest()


def registration_message(participant_id: str, public_key: str) -> bytes:
    """What a participant signs to prove it holds the private key it registers (docs/PROTOCOL.md)."""
    return f"datavalley-key-registration/v1\n{participant_id}\n{public_key}\n".encode()
