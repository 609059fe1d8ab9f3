"""Sketch properties: conservative bounds, people counted once, salted hashes, hostile bytes refused."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datavalley.crossborder import sketch
from datavalley.crossborder.demo import write_members
from datavalley.crossborder.node import identifier_column, resource_sketch, salt_for
from datavalley.errors import Conflict, InvalidInput
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.registry import NodeRegistry

SALT = b"k" * 32
ids = st.lists(st.text(alphabet="0123456789", min_size=11, max_size=11), max_size=400)


@given(ids)
def test_upper_bound_never_understates(values: list[str]) -> None:
    est, ub = sketch.bounds(sketch.build("cn_mobile", values, SALT))
    assert ub >= len(set(values)) and est >= 0


@given(ids, ids)
def test_union_counts_each_person_once(a: list[str], b: list[str]) -> None:
    sa, sb = sketch.build("cn_mobile", a, SALT), sketch.build("cn_mobile", b, SALT)
    merged = sketch.union(sa, sb)
    assert sketch.bounds(sketch.union(merged, sa, sb)) == sketch.bounds(merged)  # idempotent
    assert sketch.bounds(merged)[1] >= len(set(a) | set(b))
    # spelling variants of one identifier are one person
    spaced = [f"{v[:3]} {v[3:7]}-{v[7:]}" for v in a]
    assert sketch.bounds(sketch.build("cn_mobile", spaced, SALT)) == sketch.bounds(sa)


def test_large_counts_stay_within_the_documented_bound() -> None:
    n = 60_000
    est, ub = sketch.bounds(sketch.build("cn_ric", (str(i) for i in range(n)), SALT))
    # estimate within 3 sigma of 1.04/sqrt(2^14); the bound adds at most about as much again
    assert n <= ub <= n * 1.05
    assert abs(est - n) <= n * 0.0243


def test_the_salt_hides_identifiers() -> None:
    assert sketch.salted("cn_mobile", "13800000000", SALT) != sketch.salted(
        "cn_mobile", "13800000000", b"x" * 32
    )
    assert "13800000000" not in sketch.salted("cn_mobile", "13800000000", SALT)
    with pytest.raises(InvalidInput, match="salt"):
        sketch.build("cn_mobile", ["1"], b"short")


@settings(max_examples=300)
@given(st.binary(min_size=0, max_size=300))
def test_arbitrary_bytes_are_refused_or_parsed_never_crash(data: bytes) -> None:
    try:
        est, ub = sketch.bounds(data)
    except InvalidInput:
        return
    assert 0 <= est <= ub


@settings(max_examples=300)
@given(st.integers(0, 2_411), st.integers(0, 255), st.integers(0, 20))
def test_mutated_sketches_are_refused_or_parsed(pos: int, value: int, cut: int) -> None:
    good = bytearray(sketch.build("k", (str(i) for i in range(600)), SALT))
    good[pos % len(good)] = value
    data = bytes(good[: len(good) - cut])
    with contextlib.suppress(InvalidInput):
        sketch.union(data, bytes(good))


def test_node_sketch_from_the_registered_file(tmp_path: Path) -> None:
    path = write_members(tmp_path / "m.csv", 500)
    a = analyse_source(str(path), sector="retail")
    pii = registration_payload(a)["pii"]
    assert identifier_column(pii) == ("mobile", "cn_mobile")
    home = tmp_path / "home"
    NodeRegistry(home).record("r_1", location_of(a.source, a.fingerprint))
    data = resource_sketch(home, "p_1", "r_1", pii)
    assert 500 <= sketch.bounds(data)[1] <= 505
    salt = home / "node" / "crossborder" / "p_1.salt"
    assert stat.S_IMODE(os.stat(salt).st_mode) == 0o600 and salt_for(home, "p_1") == salt.read_bytes()
    # the same people under another exporter's salt hash differently
    assert resource_sketch(home, "p_2", "r_1", pii) != data
    with pytest.raises(Conflict, match="not held"):
        resource_sketch(home, "p_1", "r_2", pii)
    with pytest.raises(Conflict, match="no identifier"):
        resource_sketch(home, "p_1", "r_1", {"columns": []})
