"""`ledger verify` names each kind of tampering: changed, deleted, inserted, reordered, forged, forked."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import World, make_uscc
from datavalley.errors import InvalidInput
from datavalley.ledger import merkle
from datavalley.ledger.note import Checkpoint, Signer, sign_note
from datavalley.ledger.verify import verify_bundle


@pytest.fixture
def bundle(world: World) -> dict[str, Any]:
    for i in range(4):
        world.operator.register_participant(
            name=f"V {i}", kind="enterprise", registry_id=make_uscc(), roles=["consumer"], admin_name="x"
        )
    return world.operator.export_ledger()


def _kinds(report: Any) -> set[str]:
    return {f.kind for f in report.findings}


def _entry(b: dict[str, Any], i: int) -> dict[str, Any]:
    return json.loads(base64.b64decode(b["entries"][i]))


def _set_entry(b: dict[str, Any], i: int, obj: dict[str, Any]) -> None:
    b["entries"][i] = base64.b64encode(
        json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    ).decode()


def test_untouched_bundle_verifies(bundle: dict[str, Any]) -> None:
    """An exported bundle verifies with no findings and every checkpoint checked."""
    report = verify_bundle(bundle)
    assert report.ok, report.findings
    assert report.entries == len(bundle["entries"]) and report.checkpoints == len(bundle["checkpoints"]) > 3


def test_changed_entry_is_located(bundle: dict[str, Any]) -> None:
    """Altering one entry's content is reported as 'changed' at that entry."""
    b = copy.deepcopy(bundle)
    obj = _entry(b, 3)
    obj["type"] = "participant.deleted"
    _set_entry(b, 3, obj)
    report = verify_bundle(b)
    assert "changed" in _kinds(report)
    assert any("3" in f.message for f in report.findings if f.kind == "changed")


def test_deleted_entry(bundle: dict[str, Any]) -> None:
    """Removing an entry is reported as 'deleted' with its index."""
    b = copy.deepcopy(bundle)
    del b["entries"][2]
    report = verify_bundle(b)
    assert any(f.kind == "deleted" and f.index == 2 for f in report.findings)


def test_inserted_entry(bundle: dict[str, Any]) -> None:
    """An extra entry is reported as 'inserted'."""
    b = copy.deepcopy(bundle)
    b["entries"].insert(1, b["entries"][1])
    assert "inserted" in _kinds(verify_bundle(b))


def test_reordered_entries(bundle: dict[str, Any]) -> None:
    """Swapping two entries is reported as 'reordered'."""
    b = copy.deepcopy(bundle)
    b["entries"][1], b["entries"][2] = b["entries"][2], b["entries"][1]
    assert "reordered" in _kinds(verify_bundle(b))


def test_forged_checkpoint_signature(bundle: dict[str, Any]) -> None:
    """A checkpoint signed by another key under the exchange's name is 'bad_signature'."""
    b = copy.deepcopy(bundle)
    origin = b["origin"]
    root = merkle.root_hash([base64.b64decode(e) for e in b["entries"]])
    forger = Signer(origin, Ed25519PrivateKey.generate())
    b["checkpoints"].append(sign_note(Checkpoint(origin, len(b["entries"]), root).to_body(), [forger]))
    assert "bad_signature" in _kinds(verify_bundle(b))


def test_fork_two_signed_inconsistent_checkpoints(world: World, bundle: dict[str, Any]) -> None:
    """The exchange key signing a rewritten history shows as a 'fork' against its earlier checkpoints."""
    b = copy.deepcopy(bundle)
    entries = [base64.b64decode(e) for e in b["entries"]]
    obj = json.loads(entries[0])
    obj["type"] = "rewritten"
    entries[0] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    b["entries"] = [base64.b64encode(e).decode() for e in entries]
    signer = world.exchange.signer
    b["checkpoints"].append(
        sign_note(Checkpoint(b["origin"], len(entries), merkle.root_hash(entries)).to_body(), [signer])
    )
    report = verify_bundle(b)
    assert "fork" in _kinds(report), report.findings


def test_pinned_key_mismatch(bundle: dict[str, Any]) -> None:
    """Verifying against a different pinned key fails every checkpoint signature."""
    other = Signer(bundle["origin"], Ed25519PrivateKey.generate()).verifier().verifier_key_string()
    report = verify_bundle(bundle, verifier_key=other)
    assert {"key", "bad_signature"} <= _kinds(report)


def test_receipt_checked_against_bundle(world: World, bundle: dict[str, Any]) -> None:
    """A genuine receipt verifies; the bundle altered at its entry is caught through the receipt."""
    res = world.operator.register_participant(
        name="Receipt", kind="enterprise", registry_id=make_uscc(), roles=["consumer"], admin_name="x"
    )
    b = world.operator.export_ledger()
    assert verify_bundle(b, receipts=res.receipts).ok
    i = res.receipts[0]["index"]
    obj = _entry(b, i)
    obj["subjects"] = []
    _set_entry(b, i, obj)
    report = verify_bundle(b, receipts=res.receipts)
    assert any(f.kind == "changed" and f.index == i for f in report.findings)


def test_malformed_bundles_are_invalid_input() -> None:
    """Wrong format, non-list entries and bad base64 are InvalidInput with the field."""
    with pytest.raises(InvalidInput, match="format"):
        verify_bundle({"format": "zip"})
    with pytest.raises(InvalidInput, match="entries"):
        verify_bundle({"format": "datavalley-ledger-bundle/v1", "entries": "x", "checkpoints": []})
    vkey = Signer("x.example/log", Ed25519PrivateKey.generate()).verifier().verifier_key_string()
    with pytest.raises(InvalidInput, match="base64"):
        verify_bundle(
            {
                "format": "datavalley-ledger-bundle/v1",
                "entries": ["!!"],
                "checkpoints": [],
                "verifier_key": vkey,
            }
        )
    with pytest.raises(InvalidInput, match="verifier key is malformed"):
        verify_bundle(
            {
                "format": "datavalley-ledger-bundle/v1",
                "entries": [],
                "checkpoints": [],
                "verifier_key": "nonsense",
            }
        )
