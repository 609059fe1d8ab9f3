"""PSI sessions across a responder restart, and parties that stop before sending their whole set."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Callable

import pytest

from datavalley.errors import Conflict, IntegrityError
from datavalley.psi import MemoryDataset, Mode, PsiNode
from datavalley.psi.responder import BATCH_SIZE
from datavalley.psi.suites import ELEMENT_BYTES
from psi.support import CONTRACT, INITIATOR, RESPONDER, Pair, RawPeer


def _restart(pair: Pair, *, crash: bool) -> PsiNode:
    """A new node on the same workdir; ``crash``: the old one died without closing (kill -9)."""
    old = pair.node
    if crash:
        for s in list(old._sessions.values()):  # in this test process the old node's threads live on
            assert s.producer is not None
            s.producer.join()
        dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True, check=True)
        with sqlite3.connect(old.workdir / "sessions.db") as db:
            db.execute("UPDATE instances SET pid = ? WHERE id = ?", (int(dead.stdout), old.journal.instance))
        old.journal._db.close()  # the process is gone: its journal connection with it
    else:
        old.close()
    return PsiNode(
        participant=RESPONDER,
        authoriser=pair.responder_auth,
        data=pair.data,
        release=pair.release,
        workdir=old.workdir,
        workers=pair.workers,
    )


@pytest.mark.parametrize("crash", [False, True], ids=["shutdown", "kill-9"])
def test_a_restart_aborts_open_sessions_for_both_parties_and_charges_nothing(
    make_pair: Callable[..., Pair], crash: bool
) -> None:
    pair = make_pair(MemoryDataset([f"id{i}" for i in range(100)]))
    peer = RawPeer(pair)
    resp, _ = peer.open(10)
    assert resp.status_code == 200, resp.text
    sid = resp.json()["session_id"]
    node = _restart(pair, crash=crash)
    try:
        assert not (node.workdir / sid).exists()  # its files (blinded sets) are gone
        with pytest.raises(Conflict, match=rf"PSI session {sid} has ended \(aborted: the responder node"):
            node.peer_batch(INITIATOR, sid, 1, 0)
        with pytest.raises(Conflict, match="nothing was charged"):
            node.blinded(INITIATOR, sid, 2, 0, b"\0" * ELEMENT_BYTES * 10)
        # the responder metered nothing for the aborted session
        assert pair.responder_auth.usages == []
        # an unknown session stays unknown (no oracle over other peers' session IDs)
        with pytest.raises(Exception, match="does not exist"):
            node.peer_batch("p_someone_else", sid, 1, 0)
    finally:
        node.close()


def test_initiator_gets_the_abort_and_records_an_uncharged_failure(make_pair: Callable[..., Pair]) -> None:
    """End to end: the responder restarts mid-session; the initiator fails at once with the reason."""
    pair = make_pair(MemoryDataset([f"id{i}" for i in range(3 * BATCH_SIZE)]))
    real_open = pair.node.open

    def open_then_crash(peer: str, seq: int, body: bytes) -> dict[str, object]:
        answer = real_open(peer, seq, body)
        # the node goes down right after answering the open request; the server comes back with a
        # fresh node on the same workdir (the old object takes the new one's state)
        fresh = _restart(pair, crash=False)
        vars(pair.node).update(vars(fresh))
        return answer

    pair.node.open = open_then_crash  # type: ignore[method-assign]
    with pytest.raises(Conflict, match="aborted: the responder node shut down"):
        pair.run(MemoryDataset([f"id{i}" for i in range(0, 3 * BATCH_SIZE, 2)]))
    [usage] = pair.initiator_auth.usages
    assert usage.outcome == "failed" and usage.result_size is None


def test_finish_before_the_whole_set_was_sent_is_detected(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(MemoryDataset([f"id{i}" for i in range(50)]), mode=Mode.CARDINALITY)
    peer = RawPeer(pair)
    resp, _ = peer.open(BATCH_SIZE + 5, mode=Mode.CARDINALITY)  # declares two batches ...
    sid = resp.json()["session_id"]
    from datavalley.psi.suites import Suite, hash_to_group

    elements = hash_to_group(Suite.X25519, [f"x{i}".encode() for i in range(BATCH_SIZE)])
    assert peer.post(f"/sessions/{sid}/blinded/0", elements, seq=1).status_code == 200  # ... sends one
    answer = peer.post(f"/sessions/{sid}/finish", json.dumps({"outcome": "completed"}).encode(), seq=2)
    assert answer.status_code == 409
    assert "declared 8197 IDs (2 batches) but sent only 1 batches" in answer.json()["message"]
    [usage] = pair.responder_auth.usages
    assert usage.outcome == "failed"


def test_aggregate_over_a_partial_set_is_refused(make_pair: Callable[..., Pair]) -> None:
    from datavalley.psi import Bounds

    data = MemoryDataset([f"id{i}" for i in range(20)], values={"v": list(range(20))})
    pair = make_pair(data, mode=Mode.AGGREGATE, columns={"v": Bounds(0, 100)})
    node = pair.node
    from datavalley.psi.normalise import IdKind
    from datavalley.psi.suites import Suite
    from datavalley.psi.wire import OpenRequest

    body = OpenRequest("a" * 32, CONTRACT, Mode.AGGREGATE, Suite.X25519, IdKind.TEXT, BATCH_SIZE + 1, ("v",))
    sid = node.open(INITIATOR, 0, body.to_json())["session_id"]
    with pytest.raises(Conflict, match="has sent 0 batches; no aggregate is released over a partial set"):
        node.aggregate(INITIATOR, str(sid), 1, json.dumps({"count": 0, "ciphertext": ""}).encode())
    assert pair.release.seen == []  # nothing reached the release hook


def test_initiator_detects_a_responder_that_shrinks_its_set(make_pair: Callable[..., Pair]) -> None:
    pair = make_pair(MemoryDataset([f"id{i}" for i in range(2 * BATCH_SIZE + 10)]))
    real = pair.node.peer_batch

    def short(peer: str, session_id: str, seq: int, k: int) -> tuple[bytes, dict[str, int]]:
        data, meta = real(peer, session_id, seq, k)
        if k == 1:  # the second batch claims a smaller set and holds fewer records
            record = len(data) // meta["count"]
            return data[: record * 5], {"total": meta["total"], "count": 5}
        return data, meta

    pair.node.peer_batch = short  # type: ignore[method-assign]
    with pytest.raises(IntegrityError, match="responder batch 1 holds 5 records"):
        pair.run(MemoryDataset(["id1", "id2"]))
