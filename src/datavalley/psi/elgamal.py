"""Exponential ElGamal over ristretto255 for the aggregate mode (docs/PSI.md section 4).

The provider holds one secret ``x_j`` per column; a row's ciphertext is ``c0 = [r]G`` and
``c_j = [m_j + x_j·r]G``. Ciphertexts add component-wise, so the consumer can sum the matching rows
without reading them; the provider decrypts ``[S]G = c_j − [x_j]c0`` and recovers ``S`` (bounded) by
baby-step giant-step. All group operations are libsodium's; scalars are integers modulo the group order.
"""

from __future__ import annotations

import math
import secrets

from datavalley.errors import InvalidInput
from datavalley.psi._sodium import sodium

__all__ = [
    "MAX_RANGE",
    "ciphertext_bytes",
    "decrypt",
    "encrypt_rows",
    "keygen",
    "rerandomise",
    "sum_ciphertexts",
]

#: Order of the ristretto255 group.
L = 2**252 + 27742317777372353535851937790883648493
#: Largest plaintext range a decryption searches (about a minute of baby-step giant-step).
MAX_RANGE = 2**40
_BABY_MAX = 2**18
_IDENTITY = bytes(32)


def ciphertext_bytes(columns: int) -> int:
    return 32 * (1 + columns)


def _scalar(value: int) -> bytes:
    return (value % L).to_bytes(32, "little")


def _random_scalar() -> int:
    while True:
        r = secrets.randbelow(L)
        if r:
            return r


def _base(value: int) -> bytes:
    s = sodium()
    out = s.ffi.new("unsigned char[32]")
    if s.lib.crypto_scalarmult_ristretto255_base(out, _scalar(value)) != 0:
        return _IDENTITY  # the scalar is 0 mod L
    return bytes(s.ffi.buffer(out))


def _mul(value: int, point: bytes) -> bytes:
    s = sodium()
    out = s.ffi.new("unsigned char[32]")
    if s.lib.crypto_scalarmult_ristretto255(out, _scalar(value), point) != 0:
        raise InvalidInput("ElGamal: invalid ristretto255 element (or identity product)", field="ciphertext")
    return bytes(s.ffi.buffer(out))


def _add(p: bytes, q: bytes) -> bytes:
    s = sodium()
    out = s.ffi.new("unsigned char[32]")
    if s.lib.crypto_core_ristretto255_add(out, p, q) != 0:
        raise InvalidInput("ElGamal: invalid ristretto255 element in a ciphertext", field="ciphertext")
    return bytes(s.ffi.buffer(out))


def _sub(p: bytes, q: bytes) -> bytes:
    s = sodium()
    out = s.ffi.new("unsigned char[32]")
    if s.lib.crypto_core_ristretto255_sub(out, p, q) != 0:
        raise InvalidInput("ElGamal: invalid ristretto255 element in a ciphertext", field="ciphertext")
    return bytes(s.ffi.buffer(out))


def keygen(columns: int) -> tuple[list[int], list[bytes]]:
    """Fresh secrets ``x_j`` and public keys ``h_j = [x_j]G`` for ``columns`` columns."""
    xs = [_random_scalar() for _ in range(columns)]
    return xs, [_base(x) for x in xs]


def encrypt_rows(xs: list[int], plaintexts: list[tuple[int, ...]]) -> bytes:
    """``c0 ‖ c_1 ‖ … ‖ c_m`` per row (plaintexts are the shifted, clamped values, >= 0)."""
    out = bytearray()
    for row in plaintexts:
        r = _random_scalar()
        out += _base(r)
        for x, m in zip(xs, row, strict=True):
            out += _base(m + x * r)
    return bytes(out)


def sum_ciphertexts(blob: bytes, columns: int) -> bytes:
    """The component-wise sum of the concatenated ciphertexts in ``blob`` (identity when empty)."""
    size = ciphertext_bytes(columns)
    if len(blob) % size:
        raise InvalidInput(f"ciphertext blob of {len(blob)} bytes is not a multiple of {size}")
    acc = [_IDENTITY] * (1 + columns)
    for off in range(0, len(blob), size):
        for j in range(1 + columns):
            acc[j] = _add(acc[j], blob[off + 32 * j : off + 32 * (j + 1)])
    return b"".join(acc)


def rerandomise(ciphertext: bytes, publics: list[bytes]) -> bytes:
    """Add an encryption of zero with fresh randomness: hides which ciphertexts were summed."""
    t = _random_scalar()
    parts = [ciphertext[32 * j : 32 * (j + 1)] for j in range(1 + len(publics))]
    out = [_add(parts[0], _base(t))]
    out += [_add(parts[1 + j], _mul(t, h)) for j, h in enumerate(publics)]
    return b"".join(out)


def _discrete_log(target: bytes, limit: int) -> int:
    """``S`` in ``[0, limit]`` with ``[S]G = target`` by baby-step giant-step."""
    m = max(1, min(_BABY_MAX, math.isqrt(limit) + 1))
    table: dict[bytes, int] = {}
    g = _base(1)
    point = _IDENTITY
    for j in range(m):
        table.setdefault(point, j)
        point = _add(point, g)
    step = _base(m)
    q = target
    for i in range(limit // m + 1):
        hit = table.get(q)
        if hit is not None and i * m + hit <= limit:
            return i * m + hit
        q = _sub(q, step)
    raise InvalidInput(
        f"ElGamal: the decrypted sum is not in [0, {limit}] "
        "(the ciphertext was not a sum of this session's rows)",
        field="ciphertext",
    )


def decrypt(xs: list[int], ciphertext: bytes, limits: list[int]) -> list[int]:
    """The sums ``S_j`` in ``[0, limits[j]]`` encrypted by ``ciphertext`` (raises :class:`InvalidInput`)."""
    if len(ciphertext) != ciphertext_bytes(len(xs)):
        raise InvalidInput(
            f"aggregate ciphertext must be {ciphertext_bytes(len(xs))} bytes, got {len(ciphertext)}",
            field="ciphertext",
        )
    c0 = ciphertext[:32]
    out = []
    for j, (x, limit) in enumerate(zip(xs, limits, strict=True)):
        if limit > MAX_RANGE:
            raise InvalidInput(f"aggregate range {limit} exceeds {MAX_RANGE}", field="columns")
        plain = _sub(ciphertext[32 * (j + 1) : 32 * (j + 2)], _mul(x, c0))
        out.append(_discrete_log(plain, limit))
    return out
