"""The database-backed log: sequencing, stored-node proofs, checkpoints and receipts, on both backends."""

from __future__ import annotations

import base64
import json

import pytest

from conftest import World, make_uscc
from datavalley.errors import IntegrityError, InvalidInput, NotFound
from datavalley.ledger import log, merkle
from datavalley.ledger.note import Checkpoint, open_note
from datavalley.ledger.tables import LedgerStateRow
from datavalley.ledger.verify import verify_receipt


def _grow(world: World, n: int) -> None:
    for i in range(n):
        world.operator.register_participant(
            name=f"Grow {i}", kind="enterprise", registry_id=make_uscc(), roles=["consumer"], admin_name="x"
        )


def test_stored_proofs_equal_reference_proofs(world: World) -> None:
    """Inclusion and consistency proofs read from stored nodes equal those computed from all entries."""
    _grow(world, 6)
    ex = world.exchange
    ex.ledger.sequence_pending()
    with ex.session(write=False) as s:
        size = log.head(s).size
        entries = log.entries(s, 0, size)
        assert log.head(s).root_hash == merkle.root_hash(entries)
        for n in range(1, size + 1):
            assert log.root_at(s, n) == merkle.root_hash(entries[:n])
            for i in range(n):
                assert log.inclusion_proof(s, i, n) == merkle.inclusion_proof(entries[:n], i)
            for m in range(0, n + 1):
                assert log.consistency_proof(s, m, n) == merkle.consistency_proof(entries[:n], m)


def test_entries_are_canonical_and_indexed(world: World) -> None:
    """Each entry is canonical JSON naming its own index, event type and payload digest."""
    _grow(world, 1)
    bundle = world.operator.export_ledger()
    for i, e in enumerate(bundle["entries"]):
        raw = base64.b64decode(e)
        obj = json.loads(raw)
        assert obj["index"] == i and obj["v"] == 2 and obj["payload"].startswith("c1:")
        assert json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == raw


def test_receipt_verifies_offline(world: World) -> None:
    """A mutation's receipt verifies with only the exchange's verifier key."""
    res = world.operator.register_participant(
        name="R", kind="enterprise", registry_id=make_uscc(), roles=["provider"], admin_name="x"
    )
    verifier = world.exchange.ledger.verifier
    cp, entry, index = verify_receipt(res.receipts[0], verifier)
    assert json.loads(entry)["type"] == "participant.registered" and index == res.receipts[0]["index"]
    tampered = dict(res.receipts[0], index=index + 1 if index + 1 < cp.size else index - 1)
    with pytest.raises(IntegrityError, match="does not verify"):
        verify_receipt(tampered, verifier)


def test_checkpoint_is_a_signed_tlog_checkpoint(world: World) -> None:
    """The served checkpoint is a C2SP note signed by the exchange key, with origin, size and root."""
    _grow(world, 2)
    cp = world.operator.checkpoint()
    text, names = open_note(cp["note"], [world.exchange.ledger.verifier])
    parsed = Checkpoint.parse(text)
    assert names == [world.exchange.settings.origin] and parsed.origin == world.exchange.settings.origin
    assert parsed.size == cp["size"] and base64.b64encode(parsed.root_hash).decode() == cp["root_hash"]


def test_exchange_refuses_to_sign_an_inconsistent_tree(world: World) -> None:
    """If history is rewritten in storage after a checkpoint, the next signing is refused, not forked."""
    _grow(world, 3)
    ex = world.exchange
    before = world.operator.checkpoint()
    with ex.session(write=True) as s, s.begin():
        state = s.get(LedgerStateRow, 1)
        assert state is not None
        state.frontier = bytes(len(state.frontier))  # a different tree of the same size
    _grow_raw(world)
    with pytest.raises(IntegrityError, match="not consistent"):
        ex.ledger.publish()
    assert world.operator._http.get(f"/v1/ledger/checkpoints/{before['size']}").status_code == 200


def _grow_raw(world: World) -> None:
    """A state change whose receipt we do not ask for (sequencing only, no checkpoint)."""
    from datavalley.exchange import Context
    from datavalley.identity.model import Principal

    def touch(ctx: Context) -> None:
        ctx.emit("test.touched", [], {"n": 1})

    with world.exchange.session(write=True) as s, s.begin():
        from datavalley.config import load_settings

        ctx = Context(s, Principal.system(), world.clock(), load_settings())
        touch(ctx)
    world.exchange.ledger.sequence_pending()


def test_bad_ranges_and_unknown_hashes(world: World) -> None:
    """Out-of-range indices and sizes are InvalidInput; an unknown leaf hash is NotFound."""
    op = world.operator
    size = int(op.checkpoint()["size"])
    with pytest.raises(InvalidInput, match="out of range"):
        op.inclusion_proof(size, index=size)
    with pytest.raises(InvalidInput, match="out of range"):
        op.inclusion_proof(size + 5, index=0)
    with pytest.raises(InvalidInput):
        op.consistency_proof(size, size - 1)
    with pytest.raises(InvalidInput, match="outside the log"):
        op.entries(0, size + 1)
    with pytest.raises(NotFound, match="leaf hash"):
        op.inclusion_proof(size, leaf_hash=b"\x01" * 32)
    leaf = merkle.leaf_hash(op.entries(0, 1)[0])
    assert op.inclusion_proof(size, leaf_hash=leaf)["index"] == 0
