"""RFC 9162 Merkle hash trees: hashing, proofs, verification and storage plans.

Everything here follows RFC 9162 section 2.1 (https://www.rfc-editor.org/rfc/rfc9162#section-2.1), which
keeps the RFC 6962 tree shape and hashing with SHA-256:

* leaf hash ``SHA-256(0x00 || entry)``, interior node ``SHA-256(0x01 || left || right)``, empty tree
  ``SHA-256("")`` (section 2.1.1);
* inclusion proofs (2.1.3.1) and their verification (2.1.3.2);
* consistency proofs (2.1.4.1) and their verification (2.1.4.2).

The functions fall in three groups.

Direct functions (``root_hash``, ``inclusion_proof``, ``consistency_proof``) take the whole list of entries
and transcribe the RFC's recursive definitions. They are the reference the storage path is tested against.

Verification functions (``verify_inclusion``, ``verify_inclusion_hash``, ``verify_consistency``) are what
auditors call on untrusted input, so they return ``False`` for anything wrong or malformed and never raise.

Storage functions serve a log that keeps only *perfect subtree* hashes. A perfect subtree is addressed as
``(level, index)``: the hash of leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 holds the
leaf hashes. Any subtree of the RFC tree (including the non-perfect ones along the right edge) covers a
range whose binary decomposition into perfect subtrees is a short left-to-right list, and its hash is the
right-to-left fold of that list (``combine``). The plan functions say which stored nodes make up each proof
element, so a proof costs O(log n) lookups and no tree rebuild:

* ``root_plan(size)`` is the decomposition of ``[0, size)``;
* ``inclusion_plan`` / ``consistency_plan`` give one decomposition per proof element, in RFC order;
* ``resolve_plan`` turns a plan plus fetched node hashes into the proof.

Appending uses the *frontier*: the hashes of the perfect subtrees in ``root_plan(size)``, largest first,
i.e. ``frontier == [nodes[n] for n in root_plan(size)]``. ``append_leaves`` extends it and reports every
perfect node it completes, which is all the log has to store besides the leaf hashes;
``frontier_root(frontier)`` is the tree head. A log can therefore rebuild its frontier after a restart
from ``root_plan(size)`` alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Final

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "Node",
    "append_leaves",
    "combine",
    "consistency_plan",
    "consistency_proof",
    "frontier_root",
    "inclusion_plan",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "resolve_plan",
    "root_hash",
    "root_plan",
    "verify_consistency",
    "verify_inclusion",
    "verify_inclusion_hash",
]

HASH_SIZE: Final = 32
# RFC 9162 carries tree sizes and indices as uint64; anything larger cannot come from a real log.
MAX_TREE_SIZE: Final = 2**64 - 1

_LEAF_PREFIX: Final = b"\x00"
_NODE_PREFIX: Final = b"\x01"
_sha256 = hashlib.sha256

EMPTY_ROOT: Final[bytes] = _sha256(b"").digest()

Node = tuple[int, int]
"""A perfect subtree ``(level, index)`` covering leaves ``[index << level, (index + 1) << level)``."""


# ---------------------------------------------------------------------------------------------------------
# Hashing
# ---------------------------------------------------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || entry)``.

    Raises:
        TypeError: if ``entry`` is not bytes-like.
    """
    return _sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``.

    The children are concatenated as given (no length check), exactly like the RFC's HASH(0x01 || l || r).

    Raises:
        TypeError: if ``left`` or ``right`` is not bytes-like.
    """
    return _sha256(_NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """Return k, the largest power of two strictly smaller than ``n`` (``n >= 2``), as in RFC 9162 2.1.1."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_hash(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """Return MTH(D[lo:hi]) for leaf hashes ``leaves`` (``hi > lo``).

    Pairing neighbours level by level and carrying a lone last node up unchanged builds exactly the RFC tree
    (the left part of every split is the largest power of two), without recursion.
    """
    level = list(leaves[lo:hi])
    sha = _sha256
    while len(level) > 1:
        paired = [sha(_NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def root_hash(entries: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash MTH(D[n]) of ``entries`` (RFC 9162 2.1.1); EMPTY_ROOT for no entries.

    Raises:
        TypeError: if an entry is not bytes-like.
    """
    if not entries:
        return EMPTY_ROOT
    return _range_hash([leaf_hash(e) for e in entries], 0, len(entries))


# ---------------------------------------------------------------------------------------------------------
# Direct proofs (RFC 9162 2.1.3.1 and 2.1.4.1, transcribed literally)
# ---------------------------------------------------------------------------------------------------------


def _path(m: int, leaves: Sequence[bytes], lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]) of RFC 9162 2.1.3.1, with ``m`` relative to ``lo``."""
    n = hi - lo
    if n == 1:
        return []
    k = _split_point(n)
    if m < k:
        return [*_path(m, leaves, lo, lo + k), _range_hash(leaves, lo + k, hi)]
    return [*_path(m - k, leaves, lo + k, hi), _range_hash(leaves, lo, lo + k)]


def _subproof(m: int, leaves: Sequence[bytes], lo: int, hi: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b) of RFC 9162 2.1.4.1, with ``m`` relative to ``lo``."""
    n = hi - lo
    if m == n:
        return [] if b else [_range_hash(leaves, lo, hi)]
    k = _split_point(n)
    if m <= k:
        return [*_subproof(m, leaves, lo, lo + k, b), _range_hash(leaves, lo + k, hi)]
    return [*_subproof(m - k, leaves, lo + k, hi, False), _range_hash(leaves, lo, lo + k)]


def inclusion_proof(entries: Sequence[bytes], index: int) -> list[bytes]:
    """Return the inclusion proof of ``entries[index]`` in the tree of all ``entries`` (RFC 9162 2.1.3.1).

    Raises:
        ValueError: if ``index`` is not in ``range(len(entries))``.
        TypeError: if an entry is not bytes-like.
    """
    if not 0 <= index < len(entries):
        raise ValueError(f"leaf index {index} is out of range for a tree of size {len(entries)}")
    return _path(index, [leaf_hash(e) for e in entries], 0, len(entries))


def consistency_proof(entries: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the consistency proof from size ``old_size`` to ``len(entries)`` (RFC 9162 2.1.4.1).

    The RFC defines proofs only for ``0 < old_size < new_size``; for ``old_size == 0`` and for
    ``old_size == len(entries)`` there is nothing to prove and the proof is empty.

    Raises:
        ValueError: if ``old_size`` is not in ``range(len(entries) + 1)``.
        TypeError: if an entry is not bytes-like.
    """
    new_size = len(entries)
    if not 0 <= old_size <= new_size:
        raise ValueError(f"old size {old_size} is out of range for a tree of size {new_size}")
    if old_size in (0, new_size):
        return []
    return _subproof(old_size, [leaf_hash(e) for e in entries], 0, new_size, True)


# ---------------------------------------------------------------------------------------------------------
# Verification (RFC 9162 2.1.3.2 and 2.1.4.2); never raises
# ---------------------------------------------------------------------------------------------------------


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes | bytearray) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    # bool is an int subclass; True as a tree size is a caller bug, not a size of 1.
    return type(value) is int and 0 <= value <= MAX_TREE_SIZE


def _hash_list(proof: object) -> list[bytes] | None:
    """Return ``proof`` as a list of 32-byte hashes, or None if it is not a sequence of them."""
    # A bytes object is a Sequence too (of ints); it is never a valid proof.
    if not isinstance(proof, Sequence) or isinstance(proof, str | bytes | bytearray):
        return None
    # A uint64 tree has depth <= 64, so longer proofs cannot verify; refusing early bounds the work.
    if len(proof) > 64:
        return None
    out: list[bytes] = []
    for item in proof:
        if not _is_hash(item):
            return None
        out.append(bytes(item))
    return out


def verify_inclusion_hash(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Check that leaf hash ``leaf`` is at ``index`` in the tree of ``size`` leaves with head ``root``.

    Implements RFC 9162 2.1.3.2 exactly. Returns False (never raises) for a wrong, truncated, padded or
    malformed proof, hashes that are not 32 bytes, non-int or negative numbers, ``index >= size`` and sizes
    beyond uint64.

    As in the RFC, ``size`` only steers the walk: a proof can also verify under another size whose path has
    the same shape (e.g. leaf 0 of sizes 3 and 4). ``(size, root)`` must therefore come from one signed
    checkpoint, never from the party supplying the proof.
    """
    if not (_is_size(index) and _is_size(size) and _is_hash(leaf) and _is_hash(root)):
        return False
    path = _hash_list(proof)
    if path is None or index >= size:
        return False
    sha = _sha256
    fn = index
    sn = size - 1
    r = bytes(leaf)
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha(_NODE_PREFIX + p + r).digest()
            # 4.b.ii: skip the levels where this node is a lone right-edge child promoted unchanged.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = sha(_NODE_PREFIX + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_inclusion(entry: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """Check that ``entry`` (the raw leaf data) is at ``index`` in the tree of ``size`` leaves with ``root``.

    Hashes the entry with ``leaf_hash`` and defers to ``verify_inclusion_hash``. Returns False (never raises)
    for any wrong or malformed input, including an entry that is not bytes.
    """
    if not isinstance(entry, bytes | bytearray):
        return False
    return verify_inclusion_hash(leaf_hash(bytes(entry)), index, size, proof, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check that the tree of ``new_size`` leaves with head ``new_root`` extends the one with ``old_root``.

    Implements RFC 9162 2.1.4.2 exactly for ``0 < old_size < new_size``. The RFC leaves the edge cases
    open, so they are defined here:

    * ``old_size == new_size``: true only with an empty proof and ``old_root == new_root``;
    * ``old_size == 0``: every tree extends the empty tree, so this is true only with an empty proof and
      ``old_root == EMPTY_ROOT`` (the only head a size-0 tree can have); when ``new_size`` is also 0 the
      previous rule additionally requires ``new_root == EMPTY_ROOT``.

    Both roots must be 32-byte hashes in every case. Returns False (never raises) for a wrong, truncated,
    padded or malformed proof, non-int or negative sizes, ``old_size > new_size`` and sizes beyond uint64.

    As in the RFC, the sizes only steer the walk, so each ``(size, root)`` pair must come from one signed
    checkpoint (see ``verify_inclusion_hash``).
    """
    if not (_is_size(old_size) and _is_size(new_size) and _is_hash(old_root) and _is_hash(new_root)):
        return False
    path = _hash_list(proof)
    if path is None or old_size > new_size:
        return False
    if old_size == new_size:
        return not path and old_root == new_root and (old_size != 0 or old_root == EMPTY_ROOT)
    if old_size == 0:
        return not path and old_root == EMPTY_ROOT
    # Step 1: a non-trivial consistency proof is never empty.
    if not path:
        return False
    # Step 2: when the old tree is perfect its root is a node of the new tree and the RFC omits it.
    if old_size & (old_size - 1) == 0:
        path.insert(0, bytes(old_root))
    # Steps 3-4.
    fn = old_size - 1
    sn = new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5.
    sha = _sha256
    fr = sr = path[0]
    # Step 6.
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha(_NODE_PREFIX + c + fr).digest()
            sr = sha(_NODE_PREFIX + c + sr).digest()
            # 6.b.ii: as in inclusion, skip levels where the node is promoted along the right edge.
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = sha(_NODE_PREFIX + sr + c).digest()
        fn >>= 1
        sn >>= 1
    # Step 7.
    return sn == 0 and fr == old_root and sr == new_root


# ---------------------------------------------------------------------------------------------------------
# Storage plans: proofs from stored perfect-subtree hashes
# ---------------------------------------------------------------------------------------------------------


def _decompose(lo: int, hi: int) -> list[Node]:
    """Return the perfect subtrees covering ``[lo, hi)``, left to right, largest first.

    Only meaningful for ranges that are subtrees of an RFC tree: there ``lo`` is a multiple of the largest
    block, so each block is an aligned perfect subtree.
    """
    out: list[Node] = []
    n = hi - lo
    pos = lo
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            out.append((level, pos >> level))
            pos += 1 << level
    return out


def _check_size(name: str, value: int) -> None:
    if type(value) is not int or not 0 <= value <= MAX_TREE_SIZE:
        raise ValueError(f"{name} must be an int in [0, 2**64), got {value!r}")


def root_plan(size: int) -> list[Node]:
    """Return the perfect subtrees whose ``combine`` is the root of a tree of ``size`` leaves.

    They are listed left to right (largest first); their hashes are exactly the frontier used by
    ``append_leaves``. Empty for ``size == 0`` (whose root is EMPTY_ROOT).

    Raises:
        ValueError: if ``size`` is not an int in ``[0, 2**64)``.
    """
    _check_size("size", size)
    return _decompose(0, size)


def inclusion_plan(index: int, size: int) -> list[list[Node]]:
    """Return, for each element of the inclusion proof of leaf ``index`` in a tree of ``size``, its nodes.

    Elements come in RFC 9162 2.1.3.1 order (bottom up); each is the left-to-right list of perfect subtrees
    whose ``combine`` is that element. The proof for ``(index, size)`` is
    ``[combine([nodes[n] for n in element]) for element in plan]``.

    Raises:
        ValueError: if ``size`` is not an int in ``[0, 2**64)`` or ``index`` is not in ``range(size)``.
    """
    _check_size("size", size)
    if type(index) is not int or not 0 <= index < size:
        raise ValueError(f"leaf index {index!r} is out of range for a tree of size {size}")
    # Walk PATH(m, D[n]) from the root down; each step's sibling is one proof element, emitted reversed.
    siblings: list[list[Node]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split_point(hi - lo)
        if index < lo + k:
            siblings.append(_decompose(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(_decompose(lo, lo + k))
            lo += k
    siblings.reverse()
    return siblings


def consistency_plan(old_size: int, new_size: int) -> list[list[Node]]:
    """Return, for each element of the consistency proof from ``old_size`` to ``new_size``, its nodes.

    Elements come in RFC 9162 2.1.4.1 order; each is the left-to-right list of perfect subtrees whose
    ``combine`` is that element. Empty when ``old_size`` is 0 or equals ``new_size``.

    Raises:
        ValueError: if the sizes are not ints in ``[0, 2**64)`` or ``old_size > new_size``.
    """
    _check_size("old_size", old_size)
    _check_size("new_size", new_size)
    if old_size > new_size:
        raise ValueError(f"old size {old_size} is larger than new size {new_size}")
    if old_size in (0, new_size):
        return []
    # Walk SUBPROOF(m, D[n], true) from the root down: siblings are emitted innermost first, after the
    # terminal MTH(D[m]) element that appears only once the walk has turned right (b == false).
    siblings: list[list[Node]] = []
    lo, hi = 0, new_size
    complete = True
    while old_size - lo != hi - lo:
        k = _split_point(hi - lo)
        if old_size - lo <= k:
            siblings.append(_decompose(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(_decompose(lo, lo + k))
            lo += k
            complete = False
    siblings.reverse()
    if not complete:
        siblings.insert(0, _decompose(lo, hi))
    return siblings


def combine(hashes: Sequence[bytes]) -> bytes:
    """Fold a left-to-right perfect decomposition into the hash of the subtree it covers.

    The RFC tree over a range splits off its largest perfect block on the left, so the hash is the
    right-to-left fold ``node_hash(p0, node_hash(p1, ... node_hash(p[k-2], p[k-1])))``. A single hash is
    returned unchanged.

    Raises:
        ValueError: if ``hashes`` is empty (an empty range has no subtree hash; see ``frontier_root``).
    """
    if not hashes:
        raise ValueError("cannot combine an empty list of hashes")
    sha = _sha256
    h = hashes[-1]
    for i in range(len(hashes) - 2, -1, -1):
        h = sha(_NODE_PREFIX + hashes[i] + h).digest()
    return bytes(h)


def resolve_plan(plan: Sequence[Sequence[Node]], nodes: Mapping[Node, bytes]) -> list[bytes]:
    """Turn an inclusion or consistency plan into the proof, using fetched perfect-node hashes.

    ``nodes`` must hold every ``(level, index)`` the plan mentions (a log fetches them in one query).

    Raises:
        KeyError: if a node of the plan is missing from ``nodes``.
        ValueError: if an element of the plan is empty.
    """
    return [combine([nodes[n] for n in element]) for element in plan]


# ---------------------------------------------------------------------------------------------------------
# Appending (the ledger's hot path)
# ---------------------------------------------------------------------------------------------------------


def append_leaves(
    frontier: Sequence[bytes], size: int, leaf_hashes: Sequence[bytes]
) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """Append leaf hashes to a tree given by its frontier; return the new frontier and the new nodes.

    ``frontier`` holds the hashes of ``root_plan(size)`` (largest subtree first) and is not modified.
    The second result lists every perfect node completed by the append as ``(level, index, hash)`` with
    ``level >= 1``, in completion order; together with the leaf hashes (level 0, stored by the caller)
    these are all the nodes ``inclusion_plan`` and ``consistency_plan`` refer to.

    Raises:
        ValueError: if ``size`` is not an int in ``[0, 2**64)``, the frontier length does not match
            ``size``, a leaf hash is not 32 bytes, or the tree would outgrow uint64.
    """
    _check_size("size", size)
    if len(frontier) != size.bit_count():
        raise ValueError(f"a tree of size {size} has {size.bit_count()} frontier hashes, got {len(frontier)}")
    if size + len(leaf_hashes) > MAX_TREE_SIZE:
        raise ValueError("appending would exceed the uint64 tree size limit")
    # The frontier works like a binary counter: the subtree for each set bit of size, smallest last.
    # Adding a leaf merges it with one stacked subtree per trailing 1 bit of the old size (the carries).
    stack = list(frontier)
    new_nodes: list[tuple[int, int, bytes]] = []
    push = stack.append
    pop = stack.pop
    emit = new_nodes.append
    sha = _sha256
    prefix = _NODE_PREFIX
    for h in leaf_hashes:
        if len(h) != HASH_SIZE:
            raise ValueError(f"leaf hash at tree index {size} is {len(h)} bytes, expected {HASH_SIZE}")
        n = size
        size += 1
        level = 0
        while n & 1:
            h = sha(prefix + pop() + h).digest()
            n >>= 1
            level += 1
            emit((level, n, h))
        push(h)
    return stack, new_nodes


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """Return the tree head for a frontier (see ``append_leaves``); EMPTY_ROOT for an empty frontier.

    Raises:
        TypeError: if a frontier entry is not bytes-like.
    """
    if not frontier:
        return EMPTY_ROOT
    return combine(frontier)
