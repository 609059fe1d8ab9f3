"""The two PSI cipher suites (docs/PSI.md section 2): hash to the group, multiply, validate, tag.

Every function works on a whole batch (concatenated 32-byte elements) so that it can run in a worker
process with one pickled argument per batch. Group operations are libsodium's; the only arithmetic
here is the curve-membership test of the ``x25519`` suite (Euler's criterion via GMP's Legendre symbol).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from enum import StrEnum

import gmpy2  # type: ignore[import-untyped]

from datavalley.psi._sodium import sodium

__all__ = [
    "ELEMENT_BYTES",
    "TAG_BYTES",
    "InvalidElement",
    "Suite",
    "hash_to_group",
    "multiply",
    "multiply_to_tags",
    "new_secret",
    "tags_of",
]

ELEMENT_BYTES = 32
TAG_BYTES = 12
_TAG_PERSON = b"dv-psi-tag/v1"

# Curve25519: y^2 = x^3 + A x^2 + x over GF(p).
_P = 2**255 - 19
_MP = gmpy2.mpz(_P)
_A = gmpy2.mpz(486662)
_MASK255 = (1 << 255) - 1


class Suite(StrEnum):
    """A group, its hash and its element encoding."""

    X25519 = "x25519"
    RISTRETTO255 = "ristretto255"

    @property
    def domain(self) -> bytes:
        """The hash prefix that separates this suite's hash-to-group from every other use of SHA-512."""
        return f"datavalley/psi/v1/{self.value}".encode() + b"\x00"


class EngineProtocol(StrEnum):
    """A protocol of SecretFlow's PSI engine (the ``secretflow`` backend, docs/PSI.md section 9)."""

    RR22 = "RR22"
    KKRT = "KKRT"
    ECDH = "ECDH"


class InvalidElement(ValueError):
    """A received element is not a valid group element; ``index`` is its position in the batch."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(index, reason)
        self.index = index
        self.reason = reason


def new_secret(suite: Suite) -> bytes:
    """A fresh secret scalar for one session (32 bytes)."""
    s = sodium()
    buf = s.ffi.new("unsigned char[32]")
    if suite is Suite.RISTRETTO255:
        s.lib.crypto_core_ristretto255_scalar_random(buf)
    else:
        # X25519 clamps internally: the effective scalar is 8·k' with k' uniform in [2^251, 2^252).
        s.lib.randombytes_buf(buf, 32)
    return bytes(s.ffi.buffer(buf))


def _on_curve(u: int) -> bool:
    if not 0 < u < _P:
        return False
    mu = gmpy2.mpz(u)
    return bool(gmpy2.legendre(mu * (mu * (mu + _A) + 1) % _MP, _MP) == 1)


def _x25519_hash(domain: bytes, value: bytes) -> bytes:
    for i in range(256):
        d = hashlib.sha512(domain + bytes((i,)) + value).digest()
        for half in (d[:32], d[32:]):
            u = int.from_bytes(half, "little") & _MASK255
            if _on_curve(u):
                return u.to_bytes(32, "little")
    raise RuntimeError("hash to Curve25519 found no point in 512 tries (probability 2^-512)")


def hash_to_group(suite: Suite, values: Sequence[bytes]) -> bytes:
    """``H(v)`` for each normalised ID (UTF-8 bytes), concatenated."""
    domain = suite.domain
    if suite is Suite.X25519:
        return b"".join(_x25519_hash(domain, v) for v in values)
    s = sodium()
    out = s.ffi.new("unsigned char[]", ELEMENT_BYTES * len(values))
    for i, v in enumerate(values):
        s.lib.crypto_core_ristretto255_from_hash(out + ELEMENT_BYTES * i, hashlib.sha512(domain + v).digest())
    return bytes(s.ffi.buffer(out))


def _check_length(points: bytes) -> int:
    if len(points) % ELEMENT_BYTES:
        raise InvalidElement(len(points) // ELEMENT_BYTES, f"batch of {len(points)} bytes is not n·32")
    return len(points) // ELEMENT_BYTES


def _validate_x25519(points: bytes, n: int) -> None:
    for i in range(n):
        chunk = points[ELEMENT_BYTES * i : ELEMENT_BYTES * (i + 1)]
        if chunk[31] & 0x80:
            raise InvalidElement(i, "bit 255 is set (not a canonical u-coordinate)")
        u = int.from_bytes(chunk, "little")
        if u >= _P:
            raise InvalidElement(i, "u-coordinate is not reduced modulo 2^255-19")
        if not _on_curve(u):
            raise InvalidElement(i, "not a point of Curve25519 (zero, a 2-torsion point or on the twist)")


def multiply(suite: Suite, secret: bytes, points: bytes, *, validate: bool) -> bytes:
    """``[secret]P`` for each element of ``points``.

    With ``validate`` (elements that came from the peer) every element is checked first. Raises
    :class:`InvalidElement` for a wrong length or an invalid element.
    """
    n = _check_length(points)
    s = sodium()
    if validate and suite is Suite.X25519:
        _validate_x25519(points, n)
    src = s.ffi.from_buffer(points)
    out = s.ffi.new("unsigned char[]", ELEMENT_BYTES * n)
    fn = s.lib.crypto_scalarmult_curve25519 if suite is Suite.X25519 else s.lib.crypto_scalarmult_ristretto255
    for i in range(n):
        if fn(out + ELEMENT_BYTES * i, secret, src + ELEMENT_BYTES * i) != 0:
            reason = (
                "a low-order point (the product is zero)"
                if suite is Suite.X25519
                else "not a canonical ristretto255 encoding of a non-identity element"
            )
            raise InvalidElement(i, reason)
    return bytes(s.ffi.buffer(out))


def tags_of(points: bytes, tag_bytes: int = TAG_BYTES) -> bytes:
    """The comparison tags of double-blinded elements: BLAKE2b-96 of each, concatenated."""
    blake = hashlib.blake2b
    return b"".join(
        blake(points[i : i + ELEMENT_BYTES], digest_size=tag_bytes, person=_TAG_PERSON).digest()
        for i in range(0, len(points), ELEMENT_BYTES)
    )


def multiply_to_tags(suite: Suite, secret: bytes, points: bytes, *, validate: bool) -> bytes:
    """``tag([secret]P)`` for each element (the double-blinding step)."""
    return tags_of(multiply(suite, secret, points, validate=validate))
