"""The exchange's Merkle log in the database: sequencing the outbox, reading entries, building proofs.

Sequencing takes unsequenced events from the outbox in ID order, turns each into one canonical-JSON entry
(docs/PROTOCOL.md, "Ledger entries"), and in the *same transaction* stores the entries, their leaf hashes,
every newly completed perfect-subtree hash and the new head. The head row is locked first, so sequencers
in several processes take turns and the tree never forks. Proofs read O(log n) stored hashes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from datavalley.errors import IntegrityError, InvalidInput, NotFound
from datavalley.events import INDEX_PLACEHOLDER
from datavalley.ledger import merkle
from datavalley.ledger.tables import LedgerEntryRow, LedgerStateRow

Node = tuple[int, int]


@dataclass(frozen=True)
class Head:
    """The log's current size and root."""

    size: int
    root_hash: bytes


def _split_frontier(blob: bytes) -> list[bytes]:
    if len(blob) % 32:
        raise IntegrityError("ledger head is corrupt: frontier length is not a multiple of 32")
    return [blob[i : i + 32] for i in range(0, len(blob), 32)]


def lock_head(session: Session) -> LedgerStateRow:
    """Lock (creating if needed) the log head row for this transaction."""
    state = session.execute(
        select(LedgerStateRow).where(LedgerStateRow.id == 1).with_for_update()
    ).scalar_one_or_none()
    if state is None:
        state = LedgerStateRow(id=1, size=0, frontier=b"")
        session.add(state)
        session.flush()
    return state


def head(session: Session) -> Head:
    """The current size and root hash of the log."""
    state = session.get(LedgerStateRow, 1)
    if state is None:
        return Head(0, merkle.EMPTY_ROOT)
    return Head(state.size, merkle.frontier_root(_split_frontier(state.frontier)))


def _placeholders(session: Session, n: int) -> str:
    mark = "?" if session.connection().dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)


def sequence_batch(session: Session, limit: int) -> int:
    """Append up to ``limit`` outbox events to the log in this transaction; return how many.

    The hot path runs at the DB-API level: each event already carries its canonical entry with
    ``"index":null`` (see :func:`datavalley.events.entry_template`), so sequencing is a string
    substitution, a hash, and three ``executemany`` calls.
    """
    state = lock_head(session)
    conn = session.connection()
    rows = conn.exec_driver_sql(
        f"SELECT id, entry FROM events WHERE ledger_index IS NULL ORDER BY id LIMIT {int(limit)}"
    ).fetchall()
    if not rows:
        return 0
    size = state.size
    placeholder = INDEX_PLACEHOLDER
    entries = [
        entry.replace(placeholder, f'"index":{size + i}', 1).encode("utf-8")
        for i, (_, entry) in enumerate(rows)
    ]
    count = append_entries(session, state, entries)
    p2 = _placeholders(session, 2).split(", ")
    conn.exec_driver_sql(
        f"UPDATE events SET ledger_index = {p2[0]} WHERE id = {p2[1]}",
        [(size + i, event_id) for i, (event_id, _) in enumerate(rows)],
    )
    return count


def append_entries(session: Session, state: LedgerStateRow, entries: Sequence[bytes]) -> int:
    """Store ``entries`` at the end of the log (the head must be locked by this transaction)."""
    size = state.size
    lh = merkle.leaf_hash
    leaves = [lh(e) for e in entries]
    frontier, nodes = merkle.append_leaves(_split_frontier(state.frontier), size, leaves)
    conn = session.connection()
    p3 = _placeholders(session, 3)
    conn.exec_driver_sql(
        f"INSERT INTO ledger_entries (idx, leaf_hash, entry) VALUES ({p3})",
        [(size + i, h, e) for i, (h, e) in enumerate(zip(leaves, entries, strict=True))],
    )
    if nodes:
        conn.exec_driver_sql(f"INSERT INTO ledger_nodes (level, idx, hash) VALUES ({p3})", nodes)
    state.size = size + len(entries)
    state.frontier = b"".join(frontier)
    return len(entries)


def fetch_nodes(session: Session, wanted: Iterable[Node]) -> dict[Node, bytes]:
    """Stored hashes of perfect subtrees in one round trip; raises :class:`IntegrityError` if one is missing.

    Leaves come from ``ledger_entries`` and inner nodes from ``ledger_nodes``, one ``level = ? AND idx IN
    (...)`` term per level so each is a primary-key lookup (a row-value ``(level, idx) IN (...)`` makes
    SQLite scan the whole table).
    """
    wanted = set(wanted)
    if not wanted:
        return {}
    by_level: dict[int, list[int]] = {}
    for lv, ix in wanted:
        by_level.setdefault(lv, []).append(ix)
    mark = "?" if session.connection().dialect.paramstyle == "qmark" else "%s"
    parts: list[str] = []
    params: list[int] = []
    leaves = by_level.pop(0, [])
    if leaves:
        parts.append(
            f"SELECT 0, idx, leaf_hash FROM ledger_entries WHERE idx IN ({', '.join([mark] * len(leaves))})"
        )
        params += leaves
    if by_level:
        terms = []
        for lv, ixs in sorted(by_level.items()):
            terms.append(f"(level = {mark} AND idx IN ({', '.join([mark] * len(ixs))}))")
            params += [lv, *ixs]
        parts.append(f"SELECT level, idx, hash FROM ledger_nodes WHERE {' OR '.join(terms)}")
    found = {
        (int(lv), int(ix)): bytes(h)
        for lv, ix, h in session.connection().exec_driver_sql(" UNION ALL ".join(parts), tuple(params))
    }
    missing = wanted - found.keys()
    if missing:
        raise IntegrityError(f"ledger storage is missing node hashes {sorted(missing)[:5]}")
    return found


def head_size(session: Session) -> int:
    """The number of entries in the log (no root computation)."""
    size = session.execute(select(LedgerStateRow.size).where(LedgerStateRow.id == 1)).scalar_one_or_none()
    return int(size or 0)


def _check_size(session: Session, size: int) -> int:
    current = head_size(session)
    if size < 0 or size > current:
        raise InvalidInput(f"tree size {size} is out of range (the log has {current} entries)", field="size")
    return current


def root_at(session: Session, size: int) -> bytes:
    """The root hash of the log's first ``size`` entries."""
    _check_size(session, size)
    plan = merkle.root_plan(size)
    if not plan:
        return merkle.EMPTY_ROOT
    nodes = fetch_nodes(session, plan)
    return merkle.combine([nodes[n] for n in plan])


def inclusion_proof(session: Session, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
    _check_size(session, size)
    if not 0 <= index < size:
        raise InvalidInput(f"index {index} is out of range for tree size {size}", field="index")
    plan = merkle.inclusion_plan(index, size)
    return merkle.resolve_plan(plan, fetch_nodes(session, (n for part in plan for n in part)))


def consistency_proof(session: Session, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 consistency proof from ``old_size`` to ``new_size``."""
    _check_size(session, new_size)
    if not 0 <= old_size <= new_size:
        raise InvalidInput(f"old size {old_size} must be between 0 and {new_size}", field="old_size")
    plan = merkle.consistency_plan(old_size, new_size)
    return merkle.resolve_plan(plan, fetch_nodes(session, (n for part in plan for n in part)))


def entries(session: Session, start: int, end: int) -> list[bytes]:
    """Entries ``[start, end)``; raises :class:`InvalidInput` for a range outside the log."""
    size = head_size(session)
    if not 0 <= start <= end <= size:
        raise InvalidInput(
            f"entry range [{start}, {end}) is outside the log of {size} entries", field="start"
        )
    rows = session.execute(
        select(LedgerEntryRow.entry)
        .where(LedgerEntryRow.idx >= start, LedgerEntryRow.idx < end)
        .order_by(LedgerEntryRow.idx)
    ).scalars()
    return list(rows)


def index_of_leaf(session: Session, leaf: bytes) -> int:
    """The index of the entry with this leaf hash (raises :class:`NotFound`)."""
    idx = (
        session.execute(
            select(LedgerEntryRow.idx).where(LedgerEntryRow.leaf_hash == leaf).order_by(LedgerEntryRow.idx)
        )
        .scalars()
        .first()
    )
    if idx is None:
        raise NotFound(f"no ledger entry has leaf hash {leaf.hex()}", leaf_hash=leaf.hex())
    return int(idx)
