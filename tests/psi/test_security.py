"""Refusals, replays, expiry and malformed elements: clear errors, nothing learned, nothing recorded."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from datavalley.errors import Conflict, PolicyViolation, Unauthenticated
from datavalley.psi import IdKind, MemoryDataset, Mode, Suite
from datavalley.psi.suites import hash_to_group, multiply, new_secret
from psi.support import INITIATOR, Pair, RawPeer

Y = MemoryDataset([f"person-{i}" for i in range(100)], IdKind.TEXT)
X = MemoryDataset([f"person-{i}" for i in range(50, 150)], IdKind.TEXT)
P = 2**255 - 19
# An order-8 point of Curve25519 (RFC 7748 implementations must not leak through it).
ORDER8 = 325606250916557431795983626356110631294008115727848805560023387167927233504


def _nothing_happened(pair: Pair) -> None:
    assert pair.responder_auth.usages == []
    assert pair.initiator_auth.usages == []
    assert pair.release.seen == []
    assert not (pair.workdir / "responder").exists() or not any((pair.workdir / "responder").iterdir())


def test_peer_without_contract_learns_nothing_and_is_not_charged(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(Y, refuse=True)
    with pytest.raises(PolicyViolation, match="no contract c_psi covers PSI with p_consumer"):
        pair.run(X)
    _nothing_happened(pair)


def test_only_the_named_receiver_may_start(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(Y, receiver="p_provider")
    pair.initiator_auth.grants["c_psi"] = pair.responder_auth.grants["c_psi"].__class__(
        "c_psi", Mode.INTERSECTION, INITIATOR, "main"
    )
    with pytest.raises(PolicyViolation, match="names p_provider as the receiver"):
        pair.run(X)
    _nothing_happened(pair)


def test_mode_not_permitted_by_contract(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(Y, Mode.CARDINALITY)
    pair.initiator_auth.grants["c_psi"] = pair.responder_auth.grants["c_psi"].__class__(
        "c_psi", Mode.INTERSECTION, INITIATOR, "main"
    )
    with pytest.raises(PolicyViolation, match="permits PSI mode 'cardinality', not 'intersection'"):
        pair.run(X, mode=Mode.INTERSECTION)
    _nothing_happened(pair)


def test_unknown_key_and_clock_skew_are_unauthenticated(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(Y)
    with pytest.raises(Unauthenticated, match="does not verify"):
        pair.run(X, key=Ed25519PrivateKey.generate())
    stranger = RawPeer(pair, peer="p_stranger").open(3)[0]
    assert stranger.status_code == 401
    assert stranger.json()["message"] == "peer 'p_stranger' is not a known participant"
    raw = RawPeer(pair)
    answer = raw.post("/sessions", b"{}", seq=0, skew=-3600)
    assert answer.status_code == 401
    assert "from this node's clock" in answer.json()["message"]
    _nothing_happened(pair)


def _open(pair: Pair, raw: RawPeer, n: int, suite: Suite = Suite.X25519) -> str:
    resp, _ = raw.open(n, suite=suite)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["session_id"])


def _element(u: int) -> bytes:
    return u.to_bytes(32, "little")


@pytest.mark.parametrize(
    ("name", "batch", "message"),
    [
        ("short", b"\x01" * 95, "must hold 3 elements of 32 bytes (96 bytes), got 95 bytes"),
        ("long", b"\x01" * 128, "must hold 3 elements of 32 bytes (96 bytes), got 128 bytes"),
        ("bit 255", b"\x09" + bytes(30) + b"\x80", "bit 255 is set"),
        ("unreduced", _element(P + 2), "not reduced modulo 2^255-19"),
        ("zero", bytes(32), "not a point of Curve25519"),
        ("twist", _element(2), "not a point of Curve25519"),
        ("low order", _element(ORDER8), "low-order point"),
    ],
)
def test_malformed_x25519_elements_are_refused(
    make_pair: Callable[..., Pair], name: str, batch: bytes, message: str
) -> None:
    pair = make_pair(Y)
    raw = RawPeer(pair)
    sid = _open(pair, raw, 3)
    good = multiply(
        Suite.X25519, new_secret(Suite.X25519), hash_to_group(Suite.X25519, [b"a", b"b"]), validate=False
    )
    body = batch if len(batch) != 32 else good[:32] + batch + good[32:]
    resp = raw.post(f"/sessions/{sid}/blinded/0", body, seq=1)
    assert resp.status_code == 422
    assert message in resp.json()["message"]
    if len(batch) == 32:
        assert resp.json()["details"]["index"] == 1
    assert pair.responder_auth.usages == []


@pytest.mark.parametrize(
    ("batch", "message"),
    [(b"\xff" * 32, "not a canonical ristretto255 encoding"), (bytes(32), "non-identity element")],
)
def test_malformed_ristretto_elements_are_refused(
    make_pair: Callable[..., Pair], batch: bytes, message: str
) -> None:
    pair = make_pair(Y)
    raw = RawPeer(pair)
    sid = _open(pair, raw, 1, Suite.RISTRETTO255)
    resp = raw.post(f"/sessions/{sid}/blinded/0", batch, seq=1)
    assert resp.status_code == 422
    assert message in resp.json()["message"]


def test_replays_are_refused(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(Y)
    raw = RawPeer(pair)
    first, body = raw.open(2, request_id="ab" * 16)
    assert first.status_code == 200
    again = raw.post("/sessions", body, seq=0)
    assert again.status_code == 409
    assert "was already received (replay?)" in again.json()["message"]
    sid = first.json()["session_id"]
    batch = multiply(
        Suite.X25519, new_secret(Suite.X25519), hash_to_group(Suite.X25519, [b"a", b"b"]), validate=False
    )
    ok = raw.post(f"/sessions/{sid}/blinded/0", batch, seq=1)
    assert ok.status_code == 200 and len(ok.content) == 2 * 12
    replay = raw.post(f"/sessions/{sid}/blinded/0", batch, seq=1)
    assert replay.status_code == 409
    assert "message seq 1 of PSI session" in replay.json()["message"]
    resend = raw.post(f"/sessions/{sid}/blinded/0", batch, seq=2)
    assert resend.status_code == 409
    assert "batch 0 of PSI session" in resend.json()["message"]


def test_a_session_belongs_to_the_peer_that_opened_it(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(Y, known_peers=(INITIATOR, "p_other"))
    sid = _open(pair, RawPeer(pair), 2)
    resp = RawPeer(pair, peer="p_other").post(f"/sessions/{sid}/peer/0", seq=1)
    assert resp.status_code == 404


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def test_expired_sessions_end_and_are_recorded_only_if_data_flowed(make_pair: Callable[..., Pair]) -> None:
    clock = Clock()
    pair = make_pair(Y, clock=clock)
    raw = RawPeer(pair)
    idle = _open(pair, raw, 2)
    busy = _open(pair, raw, 2)
    batch = multiply(
        Suite.X25519, new_secret(Suite.X25519), hash_to_group(Suite.X25519, [b"a", b"b"]), validate=False
    )
    assert raw.post(f"/sessions/{busy}/blinded/0", batch, seq=1).status_code == 200
    clock.now += timedelta(minutes=11)
    for sid in (idle, busy):
        resp = raw.post(f"/sessions/{sid}/peer/0", seq=2)
        assert resp.status_code == 409
        assert f"PSI session {sid} has ended (expired at" in resp.json()["message"]
    (usage,) = pair.responder_auth.usages
    assert (usage.session_id, usage.outcome, usage.result_size) == (busy, "expired", None)
    assert json.dumps(usage.to_dict())  # counts and digests only


def test_conflict_errors_come_back_as_their_class(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(Y)
    out = pair.run(X)
    raw = RawPeer(pair)
    resp = raw.post(f"/sessions/{out.session_id}/finish", b'{"outcome": "completed"}', seq=99)
    assert resp.status_code == 409
    assert Conflict.code == resp.json()["error"]
