"""Ledger use cases: sequencing, checkpoints, receipts, proofs, witnesses and bundles.

Checkpoints are C2SP tlog-checkpoint signed notes (docs/PROTOCOL.md, "Checkpoints"). Before signing, the
exchange proves the new tree consistent with its last signed checkpoint from stored hashes, so it can
never sign two inconsistent checkpoints (a fork) even if its own storage were corrupted.
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from datavalley.canonical import digest
from datavalley.errors import Conflict, IntegrityError, InvalidInput, NotFound
from datavalley.events import EventRow
from datavalley.exchange import Context
from datavalley.identity.model import Principal, Role
from datavalley.ledger import commitment, log, merkle
from datavalley.ledger.note import (
    Checkpoint,
    NoteError,
    Verifier,
    append_signature_lines,
    parse_cosignature_verifier_key,
    parse_note,
    sign_note,
    verify_cosignature,
)
from datavalley.ledger.tables import CheckpointRow, CosignatureRow, WitnessRow

if TYPE_CHECKING:
    from datavalley.exchange import Exchange

BUNDLE_FORMAT = "datavalley-ledger-bundle/v1"
RECEIPT_FORMAT = "datavalley-receipt/v1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class SignedCheckpoint:
    """A checkpoint as stored: size, root and the signed note (cosignature lines appended when served)."""

    size: int
    root_hash: bytes
    note: str


def _latest_row(session: Session) -> CheckpointRow | None:
    return session.execute(
        select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)
    ).scalar_one_or_none()


def with_cosignatures(session: Session, row: CheckpointRow) -> str:
    """The checkpoint note with every witness cosignature line appended (signed-note allows many)."""
    lines = list(
        session.execute(
            select(CosignatureRow.line)
            .where(CosignatureRow.size == row.size)
            .order_by(CosignatureRow.witness)
        ).scalars()
    )
    return append_signature_lines(row.note, lines) if lines else row.note


class Ledger:
    """The exchange's ledger: drives sequencing and checkpoint signing for an :class:`Exchange`."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self._publisher: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def verifier(self) -> Verifier:
        """The exchange's checkpoint verifier key (what auditors pin)."""
        return self.exchange.signer.verifier()

    def sequence_pending(self) -> int:
        """Sequence every event waiting in the outbox, one committed batch at a time; return the count."""
        total = 0
        batch = self.exchange.settings.sequence_batch
        while True:
            with self.exchange.session(write=True) as s, s.begin():
                n = log.sequence_batch(s, batch)
            total += n
            if n < batch:
                return total

    def publish(self) -> SignedCheckpoint:
        """Sign a checkpoint of the current tree unless the latest already covers it; return the latest."""
        with self.exchange.session(write=True) as s, s.begin():
            log.lock_head(s)
            return self._publish_locked(s)

    def _publish_locked(self, s: Session) -> SignedCheckpoint:
        """:meth:`publish` inside a transaction that already holds the head lock."""
        ex = self.exchange
        state = log.lock_head(s)
        latest = _latest_row(s)
        if latest is not None and latest.size == state.size:
            return SignedCheckpoint(latest.size, latest.root_hash, latest.note)
        if latest is not None and latest.size > state.size:
            raise IntegrityError(
                f"the log has {state.size} entries but checkpoint {latest.size} was signed: "
                "storage lost entries"
            )
        if latest is not None and _only_cosignatures_since(s, latest.size):
            # Witness cosignature records wait for the next change's checkpoint: signing one for them
            # alone would leave the checkpoint the witnesses just cosigned never the latest.
            return SignedCheckpoint(latest.size, latest.root_hash, latest.note)
        root = merkle.frontier_root(log._split_frontier(state.frontier))
        if latest is not None and latest.size > 0:
            proof = log.consistency_proof(s, latest.size, state.size)
            if not merkle.verify_consistency(latest.size, state.size, latest.root_hash, root, proof):
                raise IntegrityError(
                    f"refusing to sign: the tree of size {state.size} is not consistent with the signed "
                    f"checkpoint of size {latest.size}"
                )
        body = Checkpoint(ex.settings.origin, state.size, root).to_body()
        note = sign_note(body, [ex.signer])
        s.add(CheckpointRow(size=state.size, root_hash=root, note=note, created_at=ex.now()))
        return SignedCheckpoint(state.size, root, note)

    def receipts(self, event_ids: list[int]) -> list[dict[str, Any]]:
        """Receipts for events: sequence them, make sure a checkpoint covers them, prove inclusion.

        One write transaction: lock the head, sequence what is pending (concurrent callers' events
        included — group commit), sign a checkpoint if the tree grew, and read every proof.
        """
        if not event_ids:
            return []
        batch = self.exchange.settings.sequence_batch
        with self.exchange.session(write=False) as s:
            quiet = set(
                s.scalars(select(EventRow.id).where(EventRow.id.in_(event_ids), EventRow.type == COSIGNED))
            )
        if quiet:
            # cosignature records get their receipt once the next change's checkpoint covers them
            self.sequence_pending()
            event_ids = [e for e in event_ids if e not in quiet]
            if not event_ids:
                return []
        with self.exchange.session(write=True) as s, s.begin():
            while log.sequence_batch(s, batch) == batch:
                pass
            cp = self._publish_locked(s)
            rows = s.execute(
                select(EventRow.id, EventRow.ledger_index).where(EventRow.id.in_(event_ids))
            ).all()
            index = {eid: idx for eid, idx in rows}
            wanted = []
            for eid in event_ids:
                idx = index.get(eid)
                if idx is None or idx >= cp.size:
                    raise IntegrityError(f"event {eid} was not sequenced into checkpoint {cp.size}")
                wanted.append(idx)
            return receipts_at(s, wanted, cp)

    def start_publisher(self) -> None:
        """Start a background thread that sequences and checkpoints every ``checkpoint_interval`` seconds."""
        if self._publisher is not None:
            return
        interval = self.exchange.settings.checkpoint_interval
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.sequence_pending()
                    self.publish()
                except Exception:
                    time.sleep(min(interval, 1.0))

        self._publisher = threading.Thread(target=loop, name="datavalley-ledger-publisher", daemon=True)
        self._publisher.start()

    def stop_publisher(self) -> None:
        """Stop the background publisher (waits for the current tick)."""
        if self._publisher is not None:
            self._stop.set()
            self._publisher.join()
            self._publisher = None


COSIGNED = "ledger.cosigned"


def _only_cosignatures_since(session: Session, size: int) -> bool:
    """Whether every entry after the first ``size`` records a witness cosignature."""
    types = set(session.scalars(select(EventRow.type).where(EventRow.ledger_index >= size).distinct()).all())
    return types <= {COSIGNED}


def receipt(session: Session, index: int, cp: SignedCheckpoint) -> dict[str, Any]:
    """A receipt: the entry, its index, a signed checkpoint that includes it and the inclusion proof."""
    return receipts_at(session, [index], cp)[0]


def receipts_at(session: Session, indexes: list[int], cp: SignedCheckpoint) -> list[dict[str, Any]]:
    """Receipts for entries ``indexes`` in checkpoint ``cp``: two queries, whatever the count."""
    if any(not 0 <= i < cp.size for i in indexes):
        raise InvalidInput(f"an index is out of range for tree size {cp.size}", field="index")
    marks = ", ".join(["?" if session.connection().dialect.paramstyle == "qmark" else "%s"] * len(indexes))
    entries = {
        int(i): bytes(e)
        for i, e in session.connection().exec_driver_sql(
            f"SELECT idx, entry FROM ledger_entries WHERE idx IN ({marks})", tuple(indexes)
        )
    }
    plans = {i: merkle.inclusion_plan(i, cp.size) for i in indexes}
    nodes = log.fetch_nodes(session, (n for plan in plans.values() for part in plan for n in part))
    openings = openings_at(session, indexes)
    out = []
    for i in indexes:
        entry = entries[i]
        r: dict[str, Any] = {
            "format": RECEIPT_FORMAT,
            "index": i,
            "entry": b64(entry),
            "leaf_hash": b64(merkle.leaf_hash(entry)),
            "checkpoint": cp.note,
            "inclusion_proof": [b64(p) for p in merkle.resolve_plan(plans[i], nodes)],
        }
        if i in openings:
            r["opening"] = openings[i]
        out.append(r)
    return out


def _events_at(session: Session, indexes: list[int]) -> list[EventRow]:
    if not indexes:
        return []
    lo, hi = min(indexes), max(indexes)
    if hi - lo + 1 == len(indexes):  # a range (entries pages, bundles): no parameter list
        cond = EventRow.ledger_index.between(lo, hi)
    else:
        cond = EventRow.ledger_index.in_(indexes)
    return list(session.scalars(select(EventRow).where(cond)))


def _opening_of(ev: EventRow) -> dict[str, Any] | None:
    if ev.commit_key is None:
        return None
    return commitment.opening(
        bytes.fromhex(ev.commit_key), ev.actor, ev.actor_participant, list(ev.subjects), ev.payload_digest
    )


def openings_at(
    session: Session, indexes: list[int], principal: Principal | None = None
) -> dict[int, dict[str, Any]]:
    """Openings of the committed entries at ``indexes``: all of them (``principal`` None: the caller has
    already checked), or those whose event ``principal`` is a party to or oversees."""
    rows = _events_at(session, indexes)
    if principal is not None and not (
        principal.is_system or principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR)
    ):
        parties = event_parties(session, rows)
        me = principal.participant_id
        rows = [ev for ev in rows if me is not None and me in parties[ev.id]]
    out = {}
    for ev in rows:
        o = _opening_of(ev)
        if o is not None and ev.ledger_index is not None:
            out[ev.ledger_index] = {"index": ev.ledger_index, **o}
    return out


def event_parties(session: Session, rows: list[EventRow]) -> dict[int, set[str]]:
    """The participants each event concerns: its acting participant, participants among its subjects,
    both parties of a contract and the provider of a resource or product among its subjects."""
    from datavalley.market.tables import ContractRow, ProductRow
    from datavalley.rights.tables import ResourceRow

    ids = {s for ev in rows for s in ev.subjects}
    linked: dict[str, set[str]] = {}
    if ids:
        for cid, prov, cons in session.execute(
            select(ContractRow.id, ContractRow.provider_id, ContractRow.consumer_id).where(
                ContractRow.id.in_(ids)
            )
        ):
            linked[cid] = {prov, cons}
        for table in (ResourceRow, ProductRow):
            for oid, prov in session.execute(select(table.id, table.provider_id).where(table.id.in_(ids))):
                linked.setdefault(oid, set()).add(prov)
    out: dict[int, set[str]] = {}
    for ev in rows:
        who = {s for s in ev.subjects if s.startswith("p_")}
        if ev.actor_participant:
            who.add(ev.actor_participant)
        for s in ev.subjects:
            who |= linked.get(s, set())
        out[ev.id] = who
    return out


# --- read use cases (any authenticated caller) -------------------------------------------------


def latest_checkpoint(ctx: Context) -> dict[str, Any]:
    """The newest signed checkpoint with its witness cosignatures."""
    row = _latest_row(ctx.session)
    if row is None:
        raise NotFound("the ledger has no checkpoint yet")
    return {"size": row.size, "root_hash": b64(row.root_hash), "note": with_cosignatures(ctx.session, row)}


def checkpoint_at(ctx: Context, size: int) -> dict[str, Any]:
    """The signed checkpoint of exactly ``size`` entries (raises :class:`NotFound`)."""
    row = ctx.session.get(CheckpointRow, size)
    if row is None:
        raise NotFound(f"no checkpoint of size {size} was signed", size=size)
    return {"size": row.size, "root_hash": b64(row.root_hash), "note": with_cosignatures(ctx.session, row)}


def get_entries(ctx: Context, start: int, end: int) -> dict[str, Any]:
    """Entries ``[start, end)`` (at most 1000), base64."""
    if end - start > 1000:
        raise InvalidInput("at most 1000 entries per request", field="end")
    entries = log.entries(ctx.session, start, end)
    openings = openings_at(ctx.session, list(range(start, start + len(entries))), ctx.principal)
    return {
        "start": start,
        "entries": [b64(e) for e in entries],
        # the parties of an entry and the overseers get its opening (docs/PROTOCOL.md, "Ledger privacy")
        "openings": [openings[i] for i in sorted(openings)],
    }


def get_inclusion_proof(
    ctx: Context, *, size: int, index: int | None = None, leaf_hash: str | None = None
) -> dict[str, Any]:
    """Inclusion proof by index or by base64 leaf hash, in the tree of ``size`` entries."""
    if (index is None) == (leaf_hash is None):
        raise InvalidInput("give exactly one of index and leaf_hash", field="index")
    if leaf_hash is not None:
        try:
            raw = base64.b64decode(leaf_hash, validate=True)
        except ValueError:
            raise InvalidInput("leaf_hash is not base64", field="leaf_hash") from None
        if len(raw) != 32:
            raise InvalidInput(f"leaf_hash must be 32 bytes, got {len(raw)}", field="leaf_hash")
        index = log.index_of_leaf(ctx.session, raw)
    assert index is not None
    proof = log.inclusion_proof(ctx.session, index, size)
    return {"index": index, "tree_size": size, "proof": [b64(p) for p in proof]}


def get_consistency_proof(ctx: Context, old_size: int, new_size: int) -> dict[str, Any]:
    """Consistency proof between two tree sizes."""
    proof = log.consistency_proof(ctx.session, old_size, new_size)
    return {"old_size": old_size, "new_size": new_size, "proof": [b64(p) for p in proof]}


def get_receipt(ctx: Context, event_id: int) -> dict[str, Any]:
    """A receipt for an event, in the newest checkpoint (raises :class:`NotFound` if not yet sequenced)."""
    ev = ctx.session.get(EventRow, event_id)
    visible = ev is not None and (
        ctx.principal.has(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR)
        or (ctx.principal.participant_id or "-") in event_parties(ctx.session, [ev])[ev.id]
    )
    if ev is None or not visible:
        raise NotFound(f"event {event_id} does not exist", event_id=event_id)
    row = _latest_row(ctx.session)
    if ev.ledger_index is None or row is None or ev.ledger_index >= row.size:
        raise NotFound(f"event {event_id} is not yet in a signed checkpoint", event_id=event_id)
    return receipt(ctx.session, ev.ledger_index, SignedCheckpoint(row.size, row.root_hash, row.note))


def export_bundle(ctx: Context, *, exchange_vkey: str) -> dict[str, Any]:
    """Every entry up to the latest checkpoint, every checkpoint (with cosignatures) and the openings, as
    one bundle for offline verification (overseers only)."""
    ctx.require(Role.OPERATOR, Role.AUDITOR, Role.REGULATOR, action="exporting the ledger")
    # the log up to its latest signed checkpoint (cosignature records waiting for the next one are left out)
    latest = _latest_row(ctx.session)
    size = latest.size if latest is not None else 0
    cps = ctx.session.execute(select(CheckpointRow).order_by(CheckpointRow.size)).scalars()
    witnesses = ctx.session.execute(select(WitnessRow).order_by(WitnessRow.name)).scalars()
    return {
        "format": BUNDLE_FORMAT,
        "origin": ctx.settings.origin,
        "verifier_key": exchange_vkey,
        "witness_keys": [w.verifier_key for w in witnesses],
        "entries": [b64(e) for e in log.entries(ctx.session, 0, size)],
        "checkpoints": [with_cosignatures(ctx.session, c) for c in cps],
        "openings": [o for _, o in sorted(openings_at(ctx.session, list(range(size))).items())],
    }


# --- witnesses ----------------------------------------------------------------------------------


def register_witness(ctx: Context, verifier_key: str) -> dict[str, Any]:
    """The operator registers a witness's cosignature verifier key (C2SP vkey format)."""
    ctx.require(Role.OPERATOR, action="registering a witness")
    try:
        v = parse_cosignature_verifier_key(verifier_key)
    except NoteError as exc:
        raise InvalidInput(f"verifier_key is not a valid witness key: {exc}", field="verifier_key") from exc
    if ctx.session.get(WitnessRow, v.name) is not None:
        raise Conflict(f"a witness named {v.name!r} is already registered", witness=v.name)
    ctx.session.add(WitnessRow(name=v.name, verifier_key=verifier_key, created_at=ctx.now))
    ctx.emit("ledger.witness_registered", [], {"witness": v.name, "key_id": v.key_id.hex()})
    return {"name": v.name, "verifier_key": verifier_key}


def add_cosignature(ctx: Context, size: int, line: str) -> dict[str, Any]:
    """Store a witness cosignature line for the checkpoint of ``size`` after verifying it.

    Raises :class:`NotFound` (no such checkpoint or witness) and :class:`InvalidInput` (bad signature).
    A new (or newer) cosignature is a ``ledger.cosigned`` event: the log records which witness vouched for
    which checkpoint and when (one entry per witness round; a repeated line adds nothing). It is sequenced
    at once but checkpointed with the next change, so the checkpoint just cosigned stays the latest.
    """
    row = ctx.session.get(CheckpointRow, size)
    if row is None:
        raise NotFound(f"no checkpoint of size {size} was signed", size=size)
    name = line.strip().removeprefix("— ").split(" ", 1)[0]
    witness = ctx.session.get(WitnessRow, name)
    if witness is None:
        raise NotFound(f"witness {name!r} is not registered", witness=name)
    body = parse_note(row.note)[0]
    try:
        ts = verify_cosignature(body, line.strip(), parse_cosignature_verifier_key(witness.verifier_key))
    except NoteError as exc:
        raise InvalidInput(f"cosignature by {name!r} does not verify: {exc}", field="line") from exc
    existing = ctx.session.get(CosignatureRow, (size, name))
    if existing is not None:
        if existing.timestamp >= ts:
            return {"size": size, "witness": name, "timestamp": existing.timestamp}
        existing.timestamp, existing.line = ts, line
    else:
        ctx.session.add(CosignatureRow(size=size, witness=name, timestamp=ts, line=line))
    ctx.emit(
        COSIGNED,
        [],
        {
            "witness": name,
            "size": size,
            "root_hash": b64(row.root_hash),
            "timestamp": ts,
            "line_digest": digest({"line": line.strip()}),
        },
    )
    return {"size": size, "witness": name, "timestamp": ts}
