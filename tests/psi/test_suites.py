"""Both suites commute, hash onto the curve only, and the aggregate's ElGamal adds and decrypts exactly."""

from __future__ import annotations

import gmpy2
import pytest

from datavalley.errors import InvalidInput
from datavalley.psi import elgamal
from datavalley.psi.suites import Suite, hash_to_group, multiply, multiply_to_tags, new_secret

P = 2**255 - 19


@pytest.mark.parametrize("suite", list(Suite))
def test_double_blinding_commutes_and_separates(suite: Suite) -> None:
    ids = [f"id-{i}".encode() for i in range(200)]
    h = hash_to_group(suite, ids)
    a, b = new_secret(suite), new_secret(suite)
    ab = multiply_to_tags(suite, b, multiply(suite, a, h, validate=False), validate=True)
    ba = multiply_to_tags(suite, a, multiply(suite, b, h, validate=False), validate=True)
    assert ab == ba
    tags = {ab[i : i + 12] for i in range(0, len(ab), 12)}
    assert len(tags) == 200
    assert hash_to_group(suite, ids[:3]) == h[: 3 * 32]  # deterministic


def test_x25519_hash_never_lands_on_the_twist() -> None:
    h = hash_to_group(Suite.X25519, [str(i).encode() for i in range(500)])
    for i in range(0, len(h), 32):
        u = int.from_bytes(h[i : i + 32], "little")
        assert 0 < u < P
        assert gmpy2.legendre(u * (u * (u + 486662) + 1) % P, P) == 1


def test_elgamal_sums_and_refuses_out_of_range() -> None:
    xs, hs = elgamal.keygen(2)
    rows = [(3, 0), (10, 7), (0, 400)]
    blob = elgamal.encrypt_rows(xs, rows)
    total = elgamal.rerandomise(elgamal.sum_ciphertexts(blob, 2), hs)
    assert elgamal.decrypt(xs, total, [3 * 10, 3 * 400]) == [13, 407]
    empty = elgamal.rerandomise(elgamal.sum_ciphertexts(b"", 2), hs)
    assert elgamal.decrypt(xs, empty, [0, 0]) == [0, 0]
    with pytest.raises(InvalidInput, match="not in"):
        elgamal.decrypt(xs, total, [12, 1200])
