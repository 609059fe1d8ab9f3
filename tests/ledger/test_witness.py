"""The witness cosigns only append-only growth and refuses forks and rollbacks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import World, make_uscc
from datavalley.errors import IntegrityError, InvalidInput, NotFound
from datavalley.ledger.note import CosignatureSigner, cosign, note_cosignatures
from datavalley.ledger.witness import WitnessState, witness_round


def _grow(world: World) -> None:
    world.operator.register_participant(
        name="W", kind="enterprise", registry_id=make_uscc(), roles=["consumer"], admin_name="x"
    )


@pytest.fixture
def witness(world: World) -> CosignatureSigner:
    signer = CosignatureSigner("regulator.test/w1", Ed25519PrivateKey.generate())
    world.operator.register_witness(signer.verifier().verifier_key_string())
    return signer


def test_witness_cosigns_growing_log(world: World, witness: CosignatureSigner, tmp_path: Path) -> None:
    """Two rounds over a growing log: both cosigned, and the served note carries a valid cosignature."""
    state = tmp_path / "w.json"
    first = witness_round(world.operator, witness, state)
    _grow(world)
    second = witness_round(world.operator, witness, state)
    assert second.size > first.size and second.cosigned
    note = world.operator.checkpoint()["note"]
    assert set(note_cosignatures(note, [witness.verifier()])) == {"regulator.test/w1"}


def test_witness_detects_fork(world: World, witness: CosignatureSigner, tmp_path: Path) -> None:
    """If the witness remembers a different root for an older size, it raises and does not cosign."""
    state = tmp_path / "w.json"
    witness_round(world.operator, witness, state)
    remembered = WitnessState.load(state)
    assert remembered is not None
    WitnessState(remembered.exchange_key, remembered.size, b"\x07" * 32).save(state)
    _grow(world)
    before = world.operator.checkpoint()["note"]
    with pytest.raises(IntegrityError, match="fork"):
        witness_round(world.operator, witness, state)
    assert world.operator.checkpoint()["note"].count("regulator.test/w1") == before.count("regulator.test/w1")


def test_witness_detects_rollback(world: World, witness: CosignatureSigner, tmp_path: Path) -> None:
    """A checkpoint smaller than one already witnessed is a rollback."""
    state = tmp_path / "w.json"
    r = witness_round(world.operator, witness, state)
    remembered = WitnessState.load(state)
    assert remembered is not None
    WitnessState(remembered.exchange_key, r.size + 10, remembered.root_hash).save(state)
    with pytest.raises(IntegrityError, match="rolled back"):
        witness_round(world.operator, witness, state)


def test_witness_pins_the_exchange_key(world: World, witness: CosignatureSigner, tmp_path: Path) -> None:
    """A witness pinned to another key refuses the exchange's checkpoints."""
    from datavalley.ledger.note import Signer

    state = tmp_path / "w.json"
    other = (
        Signer(world.exchange.settings.origin, Ed25519PrivateKey.generate()).verifier().verifier_key_string()
    )
    WitnessState(other, 0, b"\x00" * 32).save(state)
    with pytest.raises(IntegrityError, match="pinned exchange key"):
        witness_round(world.operator, witness, state)


def test_bad_cosignatures_are_refused(world: World, witness: CosignatureSigner) -> None:
    """Unknown witnesses, unknown checkpoints and bad signatures are refused; nothing is stored."""
    cp = world.operator.checkpoint()
    body = cp["note"].split("\n\n")[0] + "\n"
    stranger = CosignatureSigner("stranger.test/w", Ed25519PrivateKey.generate())
    with pytest.raises(NotFound, match="not registered"):
        world.operator.cosign(cp["size"], cosign(body, stranger, 1_700_000_000))
    with pytest.raises(NotFound, match="no checkpoint"):
        world.operator.cosign(cp["size"] + 99, cosign(body, witness, 1_700_000_000))
    line = cosign(body, witness, 1_700_000_000)
    sig = bytearray(base64.b64decode(line.strip().split(" ")[-1]))
    sig[-1] ^= 1
    forged = " ".join([*line.strip().split(" ")[:-1], base64.b64encode(bytes(sig)).decode()])
    with pytest.raises(InvalidInput, match="does not verify"):
        world.operator.cosign(cp["size"], forged)
    assert "regulator.test/w1" not in world.operator.checkpoint()["note"]


def test_malformed_witness_state(tmp_path: Path) -> None:
    """A corrupt state file is a clear InvalidInput, never a silent restart."""
    p = tmp_path / "w.json"
    p.write_text(json.dumps({"size": "x"}))
    with pytest.raises(InvalidInput, match="malformed"):
        WitnessState.load(p)
