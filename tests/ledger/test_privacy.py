"""Ledger relationship privacy: the published log does not say who deals with whom.

Properties (docs/PROTOCOL.md, "Ledger privacy"):

- no ID of a participant, member, contract, product or resource appears in any published entry, and an
  outsider (any authenticated caller, even a pending participant) gets no openings for others' entries;
- each party gets the openings of exactly the entries it is a party to, overseers of all, and every opening
  checks against its committed entry (and a changed opening does not);
- offline verification keeps working: a bundle with openings verifies, a forged opening is a finding, and
  receipts carry their opening;
- commitments hide and bind (hypothesis): one value under two keys gives unlinkable commitments; an opening
  opens to exactly the committed values.
"""

from __future__ import annotations

import base64
import hmac
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import World
from datavalley.errors import IntegrityError
from datavalley.ledger.commitment import commit_fields, new_key, opening, reveal, salt
from datavalley.ledger.verify import verify_bundle
from market.conftest import Party, negotiate, use

ID = re.compile(r"\b(?:p|m|c|prd|r|g|t|k|pay|use|dsp|o)_[0-9a-z]{26}\b")


def _page(client: Any, size: int) -> tuple[list[bytes], dict[int, dict[str, Any]]]:
    data = client.get("/v1/ledger/entries", start=0, end=size)
    entries = [base64.b64decode(e) for e in data["entries"]]
    return entries, {o["index"]: o for o in data["openings"]}


def test_outsiders_learn_no_relationship(
    world: World, logistics: Party, insurer: Party, analytics: Any
) -> None:
    contract = negotiate(logistics, insurer, analytics.id)
    use(insurer, contract.id)
    _, pending_admin, pending_token = world.onboard("Curious Co", ["consumer"], verify=False)
    outsider = world.client_for(pending_token)
    other_p, _, other_token = world.onboard("Bystander", ["consumer"])
    bystander = world.client_for(other_token)
    size = int(world.operator.checkpoint()["size"])
    ids = {logistics.participant_id, insurer.participant_id, contract.id, analytics.id, logistics.member_id}

    entries, openings = _page(outsider, size)
    assert len(entries) == size
    text = b"".join(entries).decode()
    assert not ID.findall(text), "an ID reached the published ledger"
    assert not any(i in text for i in ids)
    # the pending participant sees openings only of its own onboarding events, never of the deal
    own = [reveal(entries[i], o) for i, o in openings.items()]
    assert own and all(pending_admin.participant_id in (e["subjects"] + [e["participant"]]) for e in own)
    assert not any(contract.id in e["subjects"] for e in own)
    by_entries, by_openings = _page(bystander, size)
    assert not any(contract.id in reveal(by_entries[i], o)["subjects"] for i, o in by_openings.items())

    # each party opens exactly the contract's entries (and its own), and the openings check
    deal = {
        "contract.requested",
        "contract.offered",
        "contract.accepted",
        "contract.finalized",
        "contract.used",
    }
    for party in (logistics, insurer):
        p_entries, p_openings = _page(party.client, size)
        clear = [reveal(p_entries[i], o) for i, o in p_openings.items()]
        seen = {e["type"] for e in clear if contract.id in e["subjects"]}
        assert deal <= seen, (party.participant_id, seen)
    # overseers open everything
    op_entries, op_openings = _page(world.operator, size)
    assert sorted(op_openings) == list(range(size))
    opened = [reveal(op_entries[i], o) for i, o in op_openings.items()]
    assert sum(contract.id in e["subjects"] for e in opened) >= len(deal)

    # a changed opening does not open the entry
    i, o = next((i, o) for i, o in op_openings.items() if contract.id in o["subjects"])
    forged = dict(o, subjects=[s if s != insurer.participant_id else other_p.id for s in o["subjects"]])
    if forged != o:
        with pytest.raises(IntegrityError):
            reveal(op_entries[i], forged)
    with pytest.raises(IntegrityError):
        reveal(op_entries[i], dict(o, payload="sha256:" + "0" * 64))


def test_offline_verification_with_openings(
    world: World, logistics: Party, insurer: Party, analytics: Any
) -> None:
    contract = negotiate(logistics, insurer, analytics.id)
    res = use(insurer, contract.id)
    assert all("opening" in r for r in res.receipts)
    assert (
        contract.id
        in reveal(base64.b64decode(res.receipts[0]["entry"]), res.receipts[0]["opening"])["subjects"]
    )
    bundle = world.operator.export_ledger()
    assert len(bundle["openings"]) == len(bundle["entries"])
    report = verify_bundle(bundle, receipts=res.receipts)
    assert report.ok, report.findings
    forged = json.loads(json.dumps(bundle))
    forged["openings"][3]["actor"] = insurer.member_id
    findings = verify_bundle(forged).findings
    assert [f.kind for f in findings] == ["opening"] and findings[0].index == forged["openings"][3]["index"]
    bad_receipt = dict(res.receipts[0], opening=dict(res.receipts[0]["opening"], participant=None))
    assert [f.kind for f in verify_bundle(bundle, receipts=[bad_receipt]).findings] == ["opening"]


_ids = st.text(alphabet="0123456789abcdefghjkmnpqrstvwxyz", min_size=26, max_size=26)


@settings(max_examples=200, deadline=None)
@given(
    actor=st.none() | _ids.map(lambda s: "m_" + s),
    participant=st.none() | _ids.map(lambda s: "p_" + s),
    subjects=st.lists(_ids.map(lambda s: "c_" + s), max_size=4),
    payload=st.binary(min_size=32, max_size=32).map(lambda b: "sha256:" + b.hex()),
)
def test_commitments_hide_and_bind(
    actor: str | None, participant: str | None, subjects: list[str], payload: str
) -> None:
    k1, k2 = new_key(), new_key()
    # the salt is exactly HMAC-SHA256 as documented
    assert salt(k1, "subjects/0") == hmac.digest(k1, b"datavalley-salt/v1\nsubjects/0", "sha256")
    a = commit_fields(k1, actor, participant, subjects, payload)
    b = commit_fields(k2, actor, participant, subjects, payload)
    # the same values under two entries' keys are unlinkable
    assert set(a[2]).isdisjoint(b[2]) and a[3] != b[3]
    assert all(c is None or (c.startswith("c1:") and len(c) == 67) for c in (a[0], a[1], *a[2], a[3]))
    entry = json.dumps(
        {
            "actor": a[0],
            "index": 0,
            "participant": a[1],
            "payload": a[3],
            "subjects": a[2],
            "type": "t",
            "v": 2,
        }
    ).encode()
    o = opening(k1, actor, participant, subjects, payload)
    clear = reveal(entry, o)
    assert (clear["actor"], clear["participant"], clear["subjects"], clear["payload"]) == (
        actor,
        participant,
        subjects,
        payload,
    )
    with pytest.raises(IntegrityError):
        reveal(entry, opening(k2, actor, participant, subjects, payload))
    if subjects:
        with pytest.raises(IntegrityError):
            reveal(entry, opening(k1, actor, participant, [*list(reversed(subjects)), "c_x"], payload))
