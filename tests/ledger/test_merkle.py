"""Tests for datavalley.ledger.merkle: RFC 6962/9162 vectors, transparency-dev probes and properties."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datavalley.ledger.merkle import (
    EMPTY_ROOT,
    append_leaves,
    combine,
    consistency_plan,
    consistency_proof,
    frontier_root,
    inclusion_plan,
    inclusion_proof,
    leaf_hash,
    node_hash,
    resolve_plan,
    root_hash,
    root_plan,
    verify_consistency,
    verify_inclusion,
    verify_inclusion_hash,
)

# ---------------------------------------------------------------------------------------------------------
# The RFC 9162 conformance data is copied into tests/data/standards (provenance in its README).
# It is required: when it is missing, the probe tests below fail instead of silently collecting nothing.
# ---------------------------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]
RFC9162_DIR = REPO_ROOT / "tests" / "data" / "standards" / "rfc9162"
TDEV_DIR = RFC9162_DIR / "transparency-dev-testdata"
PROBE_KINDS = ("inclusion", "consistency", "subtreeinclusion", "subtreeconsistency")
# File counts of transparency-dev/merkle testdata as vendored into the standards folder (518 in total).
PROBE_COUNTS = {"inclusion": 98, "consistency": 98, "subtreeinclusion": 204, "subtreeconsistency": 118}


def standards_file(*parts: str) -> Path:
    """Return a path under the copied rfc9162 standards folder, failing the test if it does not exist."""
    path = RFC9162_DIR.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"standards file {path} is missing; see tests/data/standards/README.md")
    return path


def probe_files(kind: str) -> list[Path]:
    """List the probe files of one kind; a missing folder yields one placeholder so the test fails loudly."""
    folder = TDEV_DIR / kind
    if not folder.is_dir():
        return [folder / "MISSING.json"]
    return sorted(folder.rglob("*.json"))


def probe_applies(kind: str, path: Path) -> bool:
    """Whether a probe exercises an API we have (a missing file counts, so its test fails)."""
    # Subtree proofs for [start, end) with start > 0 (draft-ietf-plants-merkle-tree-certs) are an API we do
    # not have; with start == 0 the subtree is the whole tree of size `end` and its proofs are RFC 9162's.
    if not kind.startswith("subtree") or not path.exists():
        return True
    return bool(json.loads(path.read_text(encoding="utf-8"))["start"] == 0)


def load_json(path: Path) -> Any:
    """Read a JSON standards file (failing, not skipping, if it is missing)."""
    standards_file(str(path.relative_to(RFC9162_DIR)))
    return json.loads(path.read_text(encoding="utf-8"))


def probe_id(path: Path) -> str:
    """Short test id for a probe: its path below the testdata folder."""
    return str(path.relative_to(TDEV_DIR)) if path.is_relative_to(TDEV_DIR) else str(path)


def b64(value: str) -> bytes:
    """Decode one base64 field of a probe."""
    return base64.b64decode(value, validate=True)


def b64_list(values: list[str] | None) -> list[bytes]:
    """Decode a probe's proof, where JSON null means an empty proof."""
    return [b64(v) for v in values or []]


# ---------------------------------------------------------------------------------------------------------
# RFC 6962 reference tree
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """The 8-leaf RFC 6962 reference tree (CT, Trillian, transparency-dev vectors)."""
    data: dict[str, Any] = load_json(RFC9162_DIR / "rfc6962_reference_tree.json")
    return data


def reference_leaves(reference: dict[str, Any]) -> list[bytes]:
    """The reference tree's leaf inputs."""
    return [bytes.fromhex(h) for h in reference["leaves_hex"]]


def test_hasher_vectors(reference: dict[str, Any]) -> None:
    """Empty root, leaf and node hashing match the transparency-dev rfc6962 hasher vectors."""
    vectors = reference["hasher_vectors"]
    assert len(vectors) == 4
    for vector in vectors:
        want = bytes.fromhex(vector["want"])
        if "left_hex" in vector:
            got = node_hash(bytes.fromhex(vector["left_hex"]), bytes.fromhex(vector["right_hex"]))
        elif "leaf_hex" in vector:
            got = leaf_hash(bytes.fromhex(vector["leaf_hex"]))
        else:
            got = EMPTY_ROOT
        assert got == want, vector["desc"]


def test_reference_roots_for_every_size(reference: dict[str, Any]) -> None:
    """root_hash, and the frontier built by append_leaves, give the reference root for sizes 0..8."""
    leaves = reference_leaves(reference)
    roots = reference["roots_hex_by_size"]
    assert sorted(map(int, roots)) == list(range(9))
    for size_text, root_hex in roots.items():
        size = int(size_text)
        assert root_hash(leaves[:size]) == bytes.fromhex(root_hex)
        frontier, _ = append_leaves([], 0, [leaf_hash(e) for e in leaves[:size]])
        assert frontier_root(frontier) == bytes.fromhex(root_hex)


def test_reference_node_hashes(reference: dict[str, Any]) -> None:
    """append_leaves stores exactly the reference tree's perfect nodes at levels 1..3."""
    leaves = [leaf_hash(e) for e in reference_leaves(reference)]
    levels = reference["node_hashes_by_level"]
    assert [bytes.fromhex(h) for h in levels[0]] == leaves
    _, nodes = append_leaves([], 0, leaves)
    want = {(level, idx): bytes.fromhex(h) for level in (1, 2, 3) for idx, h in enumerate(levels[level])}
    assert {(level, idx): h for level, idx, h in nodes} == want
    assert len(nodes) == len(want)


def test_reference_inclusion_proofs(reference: dict[str, Any]) -> None:
    """Upstream and derived inclusion proofs are reproduced exactly and verify against the reference roots."""
    leaves = reference_leaves(reference)
    cases = reference["inclusion_proofs"] + reference["derived_inclusion_proofs"]
    assert len(cases) == 5 + 36
    for case in cases:
        index, size = case["leaf_index"], case["tree_size"]
        want = [bytes.fromhex(h) for h in case["proof"]]
        assert inclusion_proof(leaves[:size], index) == want, case
        root = bytes.fromhex(reference["roots_hex_by_size"][str(size)])
        assert verify_inclusion(leaves[index], index, size, want, root)
        if "leaf_hash" in case:
            assert verify_inclusion_hash(bytes.fromhex(case["leaf_hash"]), index, size, want, root)
            assert bytes.fromhex(case["root"]) == root


def test_reference_consistency_proofs(reference: dict[str, Any]) -> None:
    """Upstream and derived consistency proofs are reproduced exactly and verify against reference roots."""
    leaves = reference_leaves(reference)
    roots = {int(k): bytes.fromhex(v) for k, v in reference["roots_hex_by_size"].items()}
    cases = reference["consistency_proofs"] + reference["derived_consistency_proofs"]
    assert len(cases) == 5 + 36
    for case in cases:
        old, new = case["size1"], case["size2"]
        want = [bytes.fromhex(h) for h in case["proof"]]
        assert consistency_proof(leaves[:new], old) == want, case
        assert verify_consistency(old, new, roots[old], roots[new], want)
        if "root1" in case:
            assert (bytes.fromhex(case["root1"]), bytes.fromhex(case["root2"])) == (roots[old], roots[new])


# ---------------------------------------------------------------------------------------------------------
# transparency-dev/merkle testdata probes
# ---------------------------------------------------------------------------------------------------------

# Where our answer deliberately differs from transparency-dev/merkle's wantErr. Every other probe must give
# exactly `not wantErr`. The differences come from two rules of ours (see verify_consistency):
#   * every root, leaf hash and proof element must be exactly 32 bytes; the Go library compares the roots of
#     equal-size trees byte for byte without checking their length, so it accepts 12-byte placeholders;
#   * consistency from size 0 is defined (true with an empty proof and old root EMPTY_ROOT) where the Go
#     consistency verifier always errors. Its size1 == 0 probes all still come out False here, for the
#     reasons _expected() computes (non-empty proof, bad old root or a non-32-byte root), so none is listed.
# The subtree verifier treats an empty subtree as consistent with any tree root, even a 12-byte one; our
# size-0 rule wants the empty tree's root to be EMPTY_ROOT, so that probe flips too.
DIVERGENT_PROBES = {
    "consistency/additional/sizes-are-equal-one-and-proof-is-empty.json",
    "subtreeconsistency/additional/sizes-are-equal-one-and-proof-is-empty.json",
    "subtreeconsistency/additional/"
    "subtree-is-empty-sizes-are-equal-zero-subtree-root-valid-tree-root-random-proof-is-empty.json",
}


def _all_hashes_well_formed(*hashes: bytes) -> bool:
    return all(len(h) == 32 for h in hashes)


def _expected(kind: str, probe: dict[str, Any]) -> bool:
    """Our expected verification result for a probe (see DIVERGENT_PROBES for where it differs)."""
    expected = not probe["wantErr"]
    proof = b64_list(probe["proof"])
    if kind.endswith("inclusion"):
        return expected and _all_hashes_well_formed(b64(probe["leafHash"]), b64(probe["root"]), *proof)
    old_root, new_root = b64(probe["root1"]), b64(probe["root2"])
    old = probe["size1"] if kind == "consistency" else probe["end"]
    new = probe["size2"] if kind == "consistency" else probe["size"]
    if not _all_hashes_well_formed(old_root, new_root, *proof):
        return False
    if old == 0 and new >= 0:
        return not proof and old_root == EMPTY_ROOT and (new != 0 or new_root == EMPTY_ROOT)
    return expected


def _run_probe(kind: str, probe: dict[str, Any]) -> bool:
    """Feed a probe to our verifier; subtree probes with start == 0 are plain RFC 9162 proofs."""
    proof = b64_list(probe["proof"])
    if kind == "inclusion":
        return verify_inclusion_hash(
            b64(probe["leafHash"]), probe["leafIdx"], probe["treeSize"], proof, b64(probe["root"])
        )
    if kind == "subtreeinclusion":
        return verify_inclusion_hash(
            b64(probe["leafHash"]), probe["leafIdx"], probe["end"], proof, b64(probe["root"])
        )
    if kind == "consistency":
        return verify_consistency(
            probe["size1"], probe["size2"], b64(probe["root1"]), b64(probe["root2"]), proof
        )
    return verify_consistency(probe["end"], probe["size"], b64(probe["root1"]), b64(probe["root2"]), proof)


def test_probe_folder_is_complete() -> None:
    """The standards folder holds all 518 transparency-dev probes (a missing folder fails here too)."""
    counts = {
        kind: len(list((standards_file("transparency-dev-testdata", kind)).rglob("*.json")))
        for kind in PROBE_KINDS
    }
    assert counts == PROBE_COUNTS
    assert sum(counts.values()) == 518


@pytest.mark.parametrize(
    ("kind", "path"),
    [(kind, path) for kind in PROBE_KINDS for path in probe_files(kind) if probe_applies(kind, path)],
    ids=lambda value: probe_id(value) if isinstance(value, Path) else None,
)
def test_transparency_dev_probe(kind: str, path: Path) -> None:
    """A transparency-dev/merkle probe verifies exactly when it should (valid pass, tampered fail)."""
    probe = load_json(path)
    expected = _expected(kind, probe)
    assert (probe_id(path) in DIVERGENT_PROBES) == (expected != (not probe["wantErr"]))
    assert _run_probe(kind, probe) is expected, probe["desc"]


def test_probe_applicability_counts() -> None:
    """Exactly 399 of the 518 probes exercise our API; the other 119 are subtrees not starting at leaf 0."""
    applicable = {kind: 0 for kind in PROBE_KINDS}
    for kind in PROBE_KINDS:
        for path in probe_files(kind):
            load_json(path)
            applicable[kind] += probe_applies(kind, path)
    assert applicable == {
        "inclusion": 98,
        "consistency": 98,
        "subtreeinclusion": 101,
        "subtreeconsistency": 102,
    }
    assert sum(applicable.values()) == 399


def test_consistency_from_empty_tree_is_defined() -> None:
    """Unlike transparency-dev/merkle, consistency from size 0 holds with an empty proof and EMPTY_ROOT."""
    entries = [b"a", b"b", b"c"]
    assert verify_consistency(0, 3, EMPTY_ROOT, root_hash(entries), [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 3, root_hash(entries), root_hash(entries), [])
    assert not verify_consistency(0, 3, EMPTY_ROOT, root_hash(entries), [EMPTY_ROOT])
    assert not verify_consistency(0, 0, EMPTY_ROOT, root_hash(entries), [])
    assert consistency_proof(entries, 0) == [] and consistency_proof(entries, 3) == []


# ---------------------------------------------------------------------------------------------------------
# Input validation
# ---------------------------------------------------------------------------------------------------------

GOOD = [b"x%d" % i for i in range(5)]
GOOD_ROOT = root_hash(GOOD)
GOOD_PROOF = inclusion_proof(GOOD, 2)
GOOD_LEAF = leaf_hash(GOOD[2])
OLD_ROOT = root_hash(GOOD[:3])
GOOD_CPROOF = consistency_proof(GOOD, 3)


def test_good_baseline_verifies() -> None:
    """The baseline used by the malformed-input cases verifies, so each case below isolates one defect."""
    assert verify_inclusion_hash(GOOD_LEAF, 2, 5, GOOD_PROOF, GOOD_ROOT)
    assert verify_inclusion(GOOD[2], 2, 5, tuple(GOOD_PROOF), GOOD_ROOT)
    # bytearray hashes are accepted too (typed as bytes in the API, hence Any here).
    mutable_leaf: Any = bytearray(GOOD_LEAF)
    mutable_proof: Any = [bytearray(p) for p in GOOD_PROOF]
    assert verify_inclusion_hash(mutable_leaf, 2, 5, mutable_proof, GOOD_ROOT)
    assert verify_consistency(3, 5, OLD_ROOT, GOOD_ROOT, GOOD_CPROOF)


MALFORMED_INCLUSION: list[tuple[str, tuple[Any, ...]]] = [
    ("negative index", (GOOD_LEAF, -1, 5, GOOD_PROOF, GOOD_ROOT)),
    ("index == size", (GOOD_LEAF, 5, 5, GOOD_PROOF, GOOD_ROOT)),
    ("size 0", (GOOD_LEAF, 0, 0, [], EMPTY_ROOT)),
    ("bool index", (GOOD_LEAF, True, 5, GOOD_PROOF, GOOD_ROOT)),
    ("float size", (GOOD_LEAF, 2, 5.0, GOOD_PROOF, GOOD_ROOT)),
    ("str index", (GOOD_LEAF, "2", 5, GOOD_PROOF, GOOD_ROOT)),
    ("size beyond uint64", (GOOD_LEAF, 2, 2**64, GOOD_PROOF, GOOD_ROOT)),
    ("proof is bytes", (GOOD_LEAF, 2, 5, b"".join(GOOD_PROOF), GOOD_ROOT)),
    ("proof is str", (GOOD_LEAF, 2, 5, "proof", GOOD_ROOT)),
    ("proof is None", (GOOD_LEAF, 2, 5, None, GOOD_ROOT)),
    ("proof is a generator", (GOOD_LEAF, 2, 5, (p for p in GOOD_PROOF), GOOD_ROOT)),
    ("proof element is str", (GOOD_LEAF, 2, 5, [p.hex() for p in GOOD_PROOF], GOOD_ROOT)),
    ("proof element 31 bytes", (GOOD_LEAF, 2, 5, [GOOD_PROOF[0][:31], *GOOD_PROOF[1:]], GOOD_ROOT)),
    ("proof element 33 bytes", (GOOD_LEAF, 2, 5, [GOOD_PROOF[0] + b"\0", *GOOD_PROOF[1:]], GOOD_ROOT)),
    ("proof of 65 elements", (GOOD_LEAF, 2, 5, [GOOD_ROOT] * 65, GOOD_ROOT)),
    ("leaf 31 bytes", (GOOD_LEAF[:31], 2, 5, GOOD_PROOF, GOOD_ROOT)),
    ("leaf is None", (None, 2, 5, GOOD_PROOF, GOOD_ROOT)),
    ("root 33 bytes", (GOOD_LEAF, 2, 5, GOOD_PROOF, GOOD_ROOT + b"\0")),
    ("root is hex str", (GOOD_LEAF, 2, 5, GOOD_PROOF, GOOD_ROOT.hex())),
    ("root is int", (GOOD_LEAF, 2, 5, GOOD_PROOF, 0)),
]


@pytest.mark.parametrize(("case", "args"), MALFORMED_INCLUSION, ids=[c for c, _ in MALFORMED_INCLUSION])
def test_verify_inclusion_hash_rejects_malformed(case: str, args: tuple[Any, ...]) -> None:
    """verify_inclusion_hash returns False, without raising, for each malformed argument."""
    assert verify_inclusion_hash(*args) is False


@pytest.mark.parametrize("entry", [None, "x2", 2, [b"x2"], memoryview(b"x2")])
def test_verify_inclusion_rejects_non_bytes_entry(entry: Any) -> None:
    """verify_inclusion returns False for an entry that is not bytes."""
    assert verify_inclusion(entry, 2, 5, GOOD_PROOF, GOOD_ROOT) is False


MALFORMED_CONSISTENCY: list[tuple[str, tuple[Any, ...]]] = [
    ("old > new", (5, 3, GOOD_ROOT, OLD_ROOT, GOOD_CPROOF)),
    ("negative old", (-3, 5, OLD_ROOT, GOOD_ROOT, GOOD_CPROOF)),
    ("bool size", (3, True, OLD_ROOT, GOOD_ROOT, GOOD_CPROOF)),
    ("float size", (3.0, 5, OLD_ROOT, GOOD_ROOT, GOOD_CPROOF)),
    ("size beyond uint64", (3, 2**64 + 5, OLD_ROOT, GOOD_ROOT, GOOD_CPROOF)),
    ("empty proof", (3, 5, OLD_ROOT, GOOD_ROOT, [])),
    ("proof is None", (3, 5, OLD_ROOT, GOOD_ROOT, None)),
    ("proof is bytes", (3, 5, OLD_ROOT, GOOD_ROOT, b"".join(GOOD_CPROOF))),
    ("proof element 31 bytes", (3, 5, OLD_ROOT, GOOD_ROOT, [GOOD_CPROOF[0][:31], *GOOD_CPROOF[1:]])),
    ("proof element None", (3, 5, OLD_ROOT, GOOD_ROOT, [None, *GOOD_CPROOF[1:]])),
    ("proof of 65 elements", (3, 5, OLD_ROOT, GOOD_ROOT, [GOOD_ROOT] * 65)),
    ("old root 31 bytes", (3, 5, OLD_ROOT[:31], GOOD_ROOT, GOOD_CPROOF)),
    ("new root None", (3, 5, OLD_ROOT, None, GOOD_CPROOF)),
    ("equal sizes, proof given", (5, 5, GOOD_ROOT, GOOD_ROOT, [GOOD_ROOT])),
    ("equal sizes, roots differ", (5, 5, GOOD_ROOT, OLD_ROOT, [])),
    ("equal sizes, short roots", (1, 1, b"don't care", b"don't care", [])),
]


@pytest.mark.parametrize(("case", "args"), MALFORMED_CONSISTENCY, ids=[c for c, _ in MALFORMED_CONSISTENCY])
def test_verify_consistency_rejects_malformed(case: str, args: tuple[Any, ...]) -> None:
    """verify_consistency returns False, without raising, for each malformed argument."""
    assert verify_consistency(*args) is False


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.lists(st.one_of(st.binary(min_size=30, max_size=34), st.integers(), st.none()), max_size=5),
)


@settings(max_examples=200, deadline=None)
@given(JUNK, JUNK, JUNK, JUNK, JUNK)
def test_verifiers_never_raise_on_junk(a: Any, b: Any, c: Any, d: Any, e: Any) -> None:
    """All three verifiers return a bool, never raise, for arbitrary junk arguments."""
    assert isinstance(verify_inclusion(a, b, c, d, e), bool)
    assert isinstance(verify_inclusion_hash(a, b, c, d, e), bool)
    assert isinstance(verify_consistency(a, b, c, d, e), bool)


def test_proof_builders_validate_arguments() -> None:
    """Direct proofs, plans and append_leaves raise ValueError on out-of-range arguments."""
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof(GOOD, 5)
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof(GOOD, -1)
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof([], 0)
    with pytest.raises(ValueError, match="out of range"):
        consistency_proof(GOOD, 6)
    with pytest.raises(ValueError, match="out of range"):
        consistency_proof(GOOD, -1)
    with pytest.raises(ValueError, match="out of range"):
        inclusion_plan(5, 5)
    with pytest.raises(ValueError, match="size"):
        inclusion_plan(0, -1)
    with pytest.raises(ValueError, match="larger than"):
        consistency_plan(6, 5)
    with pytest.raises(ValueError, match="size"):
        root_plan(2**64)
    with pytest.raises(ValueError, match="frontier"):
        append_leaves([], 1, [])
    with pytest.raises(ValueError, match="32"):
        append_leaves([], 0, [b"short"])
    with pytest.raises(ValueError, match="uint64"):
        append_leaves([EMPTY_ROOT] * 64, 2**64 - 1, [EMPTY_ROOT])
    with pytest.raises(ValueError, match="empty"):
        combine([])


def test_plan_shapes() -> None:
    """Plans address the expected perfect nodes for small worked examples (RFC 9162 figure trees)."""
    assert root_plan(0) == []
    assert root_plan(7) == [(2, 0), (1, 2), (0, 6)]
    assert root_plan(8) == [(3, 0)]
    # Leaf 0 of 7: siblings leaf 1, node [2,4), then the non-perfect right edge [4,7).
    assert inclusion_plan(0, 7) == [[(0, 1)], [(1, 1)], [(1, 2), (0, 6)]]
    assert inclusion_plan(6, 7) == [[(1, 2)], [(2, 0)]]
    assert inclusion_plan(0, 1) == []
    # RFC 9162 2.1.4.1 example trees: 3 -> 7 is [c, d, g, l] i.e. leaf 2, leaf 3, node [0,2), [4,7).
    assert consistency_plan(3, 7) == [[(0, 2)], [(0, 3)], [(1, 0)], [(1, 2), (0, 6)]]
    assert consistency_plan(4, 7) == [[(1, 2), (0, 6)]]
    assert consistency_plan(6, 7) == [[(1, 2)], [(0, 6)], [(2, 0)]]
    assert consistency_plan(0, 7) == [] and consistency_plan(7, 7) == []


# ---------------------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------------------

ENTRY_LISTS = st.lists(st.binary(max_size=6), max_size=40)
# Distinct entries keep the leaf hashes distinct, so a proof can only verify where its shape says it can.
UNIQUE_ENTRY_LISTS = st.lists(st.binary(max_size=6), min_size=1, max_size=40, unique=True)
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None)


def _inclusion_shape(m: int, n: int) -> list[str]:
    """Side of each sibling in PATH(m, D[n]) (RFC 9162 2.1.3.1): "R" right, "L" left."""
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    return [*_inclusion_shape(m, k), "R"] if m < k else [*_inclusion_shape(m - k, n - k), "L"]


def _consistency_shape(m: int, n: int, complete: bool = True) -> list[str]:
    """Kind of each element of SUBPROOF(m, D[n], b) (RFC 9162 2.1.4.1): "T" old subtree, then "R"/"L"."""
    if m == n:
        return [] if complete else ["T"]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_consistency_shape(m, k, complete), "R"]
    return [*_consistency_shape(m - k, n - k, False), "L"]


def _flip_bit(value: bytes, bit: int) -> bytes:
    """Return ``value`` with one bit inverted."""
    out = bytearray(value)
    out[bit // 8 % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


@PROPERTY_SETTINGS
@given(ENTRY_LISTS)
def test_every_inclusion_proof_verifies(entries: list[bytes]) -> None:
    """For any entries, every leaf's inclusion proof verifies against the root."""
    root = root_hash(entries)
    for index, entry in enumerate(entries):
        proof = inclusion_proof(entries, index)
        assert verify_inclusion(entry, index, len(entries), proof, root)


@PROPERTY_SETTINGS
@given(ENTRY_LISTS)
def test_every_consistency_proof_verifies(entries: list[bytes]) -> None:
    """For any entries, the consistency proof from every older size verifies."""
    new_root = root_hash(entries)
    for old in range(len(entries) + 1):
        proof = consistency_proof(entries, old)
        assert verify_consistency(old, len(entries), root_hash(entries[:old]), new_root, proof)


TAMPERS = ("flip-proof", "flip-root", "flip-leaf", "drop-last", "drop-first", "append", "prepend", "dup")


@PROPERTY_SETTINGS
@given(UNIQUE_ENTRY_LISTS, st.data())
def test_tampered_inclusion_proofs_fail(entries: list[bytes], data: st.DataObject) -> None:
    """Any bit flip, truncation or extension of an inclusion proof, leaf or root makes it fail."""
    size = len(entries)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(entries, index)
    leaf, root = leaf_hash(entries[index]), root_hash(entries)
    tamper = data.draw(st.sampled_from(TAMPERS), label="tamper")
    bit = data.draw(st.integers(0, 255), label="bit")
    extra = data.draw(st.binary(min_size=32, max_size=32), label="extra")
    if tamper in ("flip-proof", "drop-last", "drop-first", "dup") and not proof:
        tamper = "append"
    if tamper == "flip-proof":
        at = data.draw(st.integers(0, len(proof) - 1), label="at")
        proof[at] = _flip_bit(proof[at], bit)
    elif tamper == "flip-root":
        root = _flip_bit(root, bit)
    elif tamper == "flip-leaf":
        leaf = _flip_bit(leaf, bit)
    elif tamper == "drop-last":
        proof.pop()
    elif tamper == "drop-first":
        proof.pop(0)
    elif tamper == "append":
        proof.append(extra)
    elif tamper == "prepend":
        proof.insert(0, extra)
    else:
        proof.append(proof[-1])
    assert not verify_inclusion_hash(leaf, index, size, proof, root)


@PROPERTY_SETTINGS
@given(UNIQUE_ENTRY_LISTS, st.data())
def test_inclusion_with_wrong_index_or_size(entries: list[bytes], data: st.DataObject) -> None:
    """A proof checked at another (index, size) verifies only where RFC 9162's path shape is the same."""
    # For a fixed size a wrong index always fails. A wrong size can pass when the path has the same shape
    # (leaf 0 of sizes 3 and 4): RFC 9162 verification does not bind the size, the signed checkpoint does.
    size = len(entries)
    index = data.draw(st.integers(0, size - 1), label="index")
    proof = inclusion_proof(entries, index)
    leaf, root = leaf_hash(entries[index]), root_hash(entries)
    other_size = data.draw(st.integers(1, 2 * size + 2), label="other_size")
    other_index = data.draw(st.integers(0, other_size - 1), label="other_index")
    if (other_index, other_size) == (index, size):
        return
    same_shape = _inclusion_shape(other_index, other_size) == _inclusion_shape(index, size)
    assert verify_inclusion_hash(leaf, other_index, other_size, proof, root) is same_shape
    if other_size == size:
        assert not same_shape


@PROPERTY_SETTINGS
@given(UNIQUE_ENTRY_LISTS, st.data())
def test_tampered_consistency_proofs_fail(entries: list[bytes], data: st.DataObject) -> None:
    """Any bit flip, truncation or extension of a consistency proof or either root makes it fail."""
    new = len(entries)
    old = data.draw(st.integers(1, new), label="old")
    proof = consistency_proof(entries, old)
    old_root, new_root = root_hash(entries[:old]), root_hash(entries)
    tamper = data.draw(st.sampled_from(TAMPERS), label="tamper")
    bit = data.draw(st.integers(0, 255), label="bit")
    extra = data.draw(st.binary(min_size=32, max_size=32), label="extra")
    if tamper in ("flip-proof", "drop-last", "drop-first", "dup") and not proof:
        tamper = "append"
    if tamper == "flip-proof":
        at = data.draw(st.integers(0, len(proof) - 1), label="at")
        proof[at] = _flip_bit(proof[at], bit)
    elif tamper == "flip-root":
        new_root = _flip_bit(new_root, bit)
    elif tamper == "flip-leaf":
        old_root = _flip_bit(old_root, bit)
    elif tamper == "drop-last":
        proof.pop()
    elif tamper == "drop-first":
        proof.pop(0)
    elif tamper == "append":
        proof.append(extra)
    elif tamper == "prepend":
        proof.insert(0, extra)
    else:
        proof.append(proof[-1])
    assert not verify_consistency(old, new, old_root, new_root, proof)


@PROPERTY_SETTINGS
@given(UNIQUE_ENTRY_LISTS, st.data())
def test_consistency_with_wrong_sizes(entries: list[bytes], data: st.DataObject) -> None:
    """A consistency proof checked at other sizes verifies only where RFC 9162's proof shape is the same."""
    new = len(entries)
    old = data.draw(st.integers(1, new), label="old")
    proof = consistency_proof(entries, old)
    old_root, new_root = root_hash(entries[:old]), root_hash(entries)
    other_new = data.draw(st.integers(1, 2 * new + 2), label="other_new")
    other_old = data.draw(st.integers(1, other_new), label="other_old")
    if (other_old, other_new) == (old, new):
        return
    same_shape = _consistency_shape(other_old, other_new) == _consistency_shape(old, new)
    assert verify_consistency(other_old, other_new, old_root, new_root, proof) is same_shape


def _split(items: Sequence[bytes], cuts: list[int]) -> list[Sequence[bytes]]:
    """Split ``items`` into consecutive batches at the given (unsorted, possibly repeated) cut points."""
    bounds = [0, *sorted(c % (len(items) + 1) for c in cuts), len(items)]
    return [items[a:b] for a, b in itertools.pairwise(bounds)]


def _build_store(
    leaves: Sequence[bytes], cuts: list[int]
) -> tuple[list[bytes], dict[tuple[int, int], bytes], list[tuple[int, int, bytes]]]:
    """Append leaves in batches like the ledger does; return the frontier, node store and emitted nodes.

    After every batch the frontier must be the stored hashes of root_plan(size), as the ledger relies on.
    """
    nodes: dict[tuple[int, int], bytes] = {}
    emitted: list[tuple[int, int, bytes]] = []
    frontier: list[bytes] = []
    size = 0
    for batch in _split(leaves, cuts):
        frontier, new_nodes = append_leaves(frontier, size, batch)
        nodes.update({(0, size + i): h for i, h in enumerate(batch)})
        nodes.update({(level, idx): h for level, idx, h in new_nodes})
        emitted.extend(new_nodes)
        size += len(batch)
        assert frontier == [nodes[n] for n in root_plan(size)]
    return frontier, nodes, emitted


@PROPERTY_SETTINGS
@given(ENTRY_LISTS, st.lists(st.integers(0, 1000), max_size=6))
def test_append_in_any_batches_matches_root_hash(entries: list[bytes], cuts: list[int]) -> None:
    """append_leaves in arbitrary batch splits gives the frontier of root_plan and the root of root_hash."""
    leaves = [leaf_hash(e) for e in entries]
    frontier, nodes, emitted = _build_store(leaves, cuts)
    assert frontier_root(frontier) == root_hash(entries)
    assert frontier == [nodes[n] for n in root_plan(len(entries))]
    # Every perfect node of level >= 1 is emitted exactly once, with the hash of its leaf range.
    positions = [(level, idx) for level, idx, _ in emitted]
    assert len(positions) == len(set(positions))
    expected = {
        (level, idx) for level in range(1, len(entries).bit_length()) for idx in range(len(entries) >> level)
    }
    assert set(positions) == expected
    for level, idx, h in emitted:
        assert h == root_hash(entries[idx << level : (idx + 1) << level])


@PROPERTY_SETTINGS
@given(ENTRY_LISTS, st.lists(st.integers(0, 1000), max_size=4))
def test_plan_proofs_equal_direct_proofs(entries: list[bytes], cuts: list[int]) -> None:
    """Proofs resolved from stored perfect nodes equal the direct RFC proofs, for all older tree sizes too."""
    leaves = [leaf_hash(e) for e in entries]
    _, nodes, _ = _build_store(leaves, cuts)
    for size in range(1, len(entries) + 1):
        prefix = entries[:size]
        assert combine([nodes[n] for n in root_plan(size)]) == root_hash(prefix)
        for index in range(size):
            assert resolve_plan(inclusion_plan(index, size), nodes) == inclusion_proof(prefix, index)
        for old in range(size + 1):
            assert resolve_plan(consistency_plan(old, size), nodes) == consistency_proof(prefix, old)


def test_append_matches_sha256_by_hand() -> None:
    """Two appended leaves produce the level-1 node SHA-256(0x01 || l0 || l1), computed independently."""
    l0, l1 = leaf_hash(b"a"), leaf_hash(b"b")
    assert l0 == hashlib.sha256(b"\x00a").digest()
    frontier, nodes = append_leaves([], 0, [l0, l1])
    want = hashlib.sha256(b"\x01" + l0 + l1).digest()
    assert frontier == [want] and nodes == [(1, 0, want)]
    assert frontier_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
