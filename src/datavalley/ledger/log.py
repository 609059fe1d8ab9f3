"""The exchange's Merkle log in the database: sequencing the outbox, reading entries, building proofs.

Sequencing takes unsequenced events from the outbox in ID order, turns each into one canonical-JSON entry
(docs/PROTOCOL.md, "Ledger entries"), and in the *same transaction* stores the entries, their leaf hashes,
every newly completed perfect-subtree hash and the new head. The head row is locked first, so sequencers
in several processes take turns and the tree never forks. Proofs read O(log n) stored hashes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, insert, select, tuple_, update
from sqlalchemy.orm import Session

from datavalley.errors import IntegrityError, InvalidInput, NotFound
from datavalley.events import EventRow
from datavalley.ledger import merkle
from datavalley.ledger.tables import LedgerEntryRow, LedgerNodeRow, LedgerStateRow

Node = tuple[int, int]
# Core tables: bulk inserts on the hot path skip the ORM's per-object bookkeeping.
_ENTRIES = cast(Table, LedgerEntryRow.__table__)
_NODES = cast(Table, LedgerNodeRow.__table__)
ENTRY_VERSION = 1


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


def encode_entry(index: int, row: Sequence[object]) -> bytes:
    """The canonical JSON entry for an event row (id, type, actor, participant, subjects, time, digest).

    Keys are ASCII and values are strings, integers, lists of strings or null, for which Python's
    ``json.dumps(sort_keys=True, separators=(',', ':'), ensure_ascii=False)`` is exactly RFC 8785.
    """
    event_id, type_, actor, participant, subjects, occurred_at, payload_digest = row
    return json.dumps(
        {
            "v": ENTRY_VERSION,
            "index": index,
            "event": event_id,
            "type": type_,
            "actor": actor,
            "participant": participant,
            "subjects": subjects,
            "time": occurred_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),  # type: ignore[attr-defined]
            "payload": payload_digest,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode("utf-8")


def sequence_batch(session: Session, limit: int) -> int:
    """Append up to ``limit`` outbox events to the log in this transaction; return how many."""
    state = lock_head(session)
    rows = session.execute(
        select(
            EventRow.id,
            EventRow.type,
            EventRow.actor,
            EventRow.actor_participant,
            EventRow.subjects,
            EventRow.occurred_at,
            EventRow.payload_digest,
        )
        .where(EventRow.ledger_index.is_(None))
        .order_by(EventRow.id)
        .limit(limit)
    ).all()
    if not rows:
        return 0
    size = state.size
    entries = [encode_entry(size + i, tuple(r)) for i, r in enumerate(rows)]
    count = append_entries(session, state, entries)
    session.execute(update(EventRow), [{"id": r[0], "ledger_index": size + i} for i, r in enumerate(rows)])
    return count


def append_entries(session: Session, state: LedgerStateRow, entries: Sequence[bytes]) -> int:
    """Store ``entries`` at the end of the log (the head must be locked by this transaction)."""
    size = state.size
    lh = merkle.leaf_hash
    leaves = [lh(e) for e in entries]
    frontier, nodes = merkle.append_leaves(_split_frontier(state.frontier), size, leaves)
    session.execute(
        insert(_ENTRIES),
        [
            {"idx": size + i, "leaf_hash": h, "entry": e}
            for i, (h, e) in enumerate(zip(leaves, entries, strict=True))
        ],
    )
    if nodes:
        session.execute(insert(_NODES), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes])
    state.size = size + len(entries)
    state.frontier = b"".join(frontier)
    return len(entries)


def fetch_nodes(session: Session, wanted: Iterable[Node]) -> dict[Node, bytes]:
    """Stored hashes of perfect subtrees; raises :class:`IntegrityError` if one is missing."""
    wanted = set(wanted)
    leaves = sorted(ix for lv, ix in wanted if lv == 0)
    inner = sorted((lv, ix) for lv, ix in wanted if lv > 0)
    found: dict[Node, bytes] = {}
    if leaves:
        for ix, h in session.execute(
            select(LedgerEntryRow.idx, LedgerEntryRow.leaf_hash).where(LedgerEntryRow.idx.in_(leaves))
        ):
            found[(0, ix)] = h
    if inner:
        for lv, ix, h in session.execute(
            select(LedgerNodeRow.level, LedgerNodeRow.idx, LedgerNodeRow.hash).where(
                tuple_(LedgerNodeRow.level, LedgerNodeRow.idx).in_(inner)
            )
        ):
            found[(lv, ix)] = h
    missing = wanted - found.keys()
    if missing:
        raise IntegrityError(f"ledger storage is missing node hashes {sorted(missing)[:5]}")
    return found


def _check_size(session: Session, size: int) -> int:
    current = head(session).size
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
    size = head(session).size
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
