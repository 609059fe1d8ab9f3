"""Every change is on the ledger: each mutating route, called for real, produces at least one ledger entry of
the expected type, and the payloads the ledger commits to carry amounts and digests of reasons and notes.

The scenario walks every POST, PUT, PATCH and DELETE route under /v1 of the OpenAPI (a route the scenario
does not call fails the test) and the one GET that changes state (a certificate is issued on first request).
A route exempted as changing nothing by design is still called, and must leave the ledger as it was.
Each answer's receipts are the ledger entries the change produced: their types are checked, their
inclusion proofs verified with the exchange key, and their openings (the caller is a party) checked
against the committed entries.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from compute.conftest import COUNT_SQL, WorkerAt, data_contract
from conftest import World, make_uscc
from crossborder.conftest import FILE_TERMS, contract_for, foreign
from datavalley import demo_data
from datavalley.api.app import create_app
from datavalley.canonical import digest
from datavalley.compute.worker import Worker, make_handler
from datavalley.crossborder import sketch
from datavalley.crossborder.demo import write_members
from datavalley.crossborder.node import resource_sketch
from datavalley.events import EventRow
from datavalley.ledger.commitment import reveal
from datavalley.ledger.note import CosignatureSigner, cosign, parse_note
from datavalley.ledger.verify import verify_receipt
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.registry import NodeRegistry
from market.conftest import ANALYTICS_TERMS, fund, list_product, negotiate, onboard, use
from rights.conftest import analysis_of, write_trips


class Ledgered:
    """Checks each change's receipts and remembers which route templates were exercised."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.seen: dict[tuple[str, str], list[str]] = {}

    def check(self, method: str, template: str, receipts: list[dict[str, Any]], *types: str) -> list[str]:
        verifier = self.world.exchange.ledger.verifier
        got = []
        for r in receipts:
            _, entry, _ = verify_receipt(r, verifier)
            clear = reveal(entry, r.get("opening"))
            assert json.loads(entry)["v"] == 2 and clear["payload"].startswith("sha256:")
            got.append(clear["type"])
        assert got, f"{method} {template} produced no ledger entry"
        missing = [t for t in types if t not in got]
        assert not missing, f"{method} {template} produced {got}, not {missing}"
        self.seen.setdefault((method, template), []).extend(got)
        return got


def _payload(world: World, type_: str) -> dict[str, Any]:
    with Session(world.exchange.engine) as s:
        row = s.scalars(select(EventRow).where(EventRow.type == type_).order_by(EventRow.id.desc())).first()
        assert row is not None and row.payload is not None, type_
        return dict(row.payload)


def _entries(world: World) -> int:
    with Session(world.exchange.engine) as s:
        return int(s.scalar(select(func.count()).select_from(EventRow)) or 0)


@pytest.fixture
def pool_worker(tmp_path: Path) -> Iterator[WorkerAt]:
    """A compute pool's worker (the same code ``python -m datavalley.compute.worker`` serves) on a thread."""
    from http.server import ThreadingHTTPServer

    token = secrets.token_urlsafe(24)
    w = Worker("pool_ledger", 1, tmp_path / "work", token, pin=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(w))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield WorkerAt(f"http://127.0.0.1:{httpd.server_address[1]}", token, w)
    httpd.shutdown()
    httpd.server_close()
    w.close()


def test_every_mutating_route_writes_the_ledger(
    world: World, tmp_path: Path, pool_worker: WorkerAt, monkeypatch: pytest.MonkeyPatch
) -> None:
    L = Ledgered(world)
    op = world.operator
    P = "POST"

    # identity
    reg = op.register_participant(
        name="Ledger Co",
        kind="enterprise",
        registry_id=make_uscc("9144030027961"),
        roles=["provider", "consumer"],
        admin_name="a",
    )
    L.check(P, "/v1/participants", reg.receipts, "participant.registered")
    pid, admin = reg.value[0].id, reg.value[1]
    L.check(
        P,
        "/v1/participants/{participant_id}/verify",
        op.change_participant_status(pid, "verify").receipts,
        "participant.verified",
    )
    tok = op.issue_token(admin.id)
    L.check(P, "/v1/members/{member_id}/tokens", tok.receipts, "token.issued")
    co = world.client_for(tok.value.secret)
    mem = co.add_member(pid, name="clerk", roles=["consumer"])
    L.check(P, "/v1/participants/{participant_id}/members", mem.receipts, "member.added")
    t2 = co.issue_token(mem.value.id)
    L.check(P, "/v1/tokens/{token_id}/revoke", co.revoke_token(t2.value.token.id).receipts, "token.revoked")
    L.check(
        P,
        "/v1/members/{member_id}/deactivate",
        co.deactivate_member(mem.value.id).receipts,
        "member.deactivated",
    )
    key = co.register_key(pid, Ed25519PrivateKey.generate())
    L.check(P, "/v1/participants/{participant_id}/keys", key.receipts, "key.registered")
    _, receipts, _ = co.post(f"/v1/keys/{key.value.id}/revoke")
    L.check(P, "/v1/keys/{key_id}/revoke", receipts, "key.revoked")
    reason = "documents expired"
    L.check(
        P,
        "/v1/participants/{participant_id}/suspend",
        op.change_participant_status(pid, "suspend", reason).receipts,
        "participant.suspended",
    )
    assert _payload(world, "participant.suspended")["reason_digest"] is not None
    L.check(
        P,
        "/v1/participants/{participant_id}/reinstate",
        op.change_participant_status(pid, "reinstate").receipts,
        "participant.reinstated",
    )

    # ledger: a witness and its cosignature
    witness = CosignatureSigner("witness.example", Ed25519PrivateKey.generate())
    _, receipts, _ = op.post(
        "/v1/ledger/witnesses", {"verifier_key": witness.verifier().verifier_key_string()}
    )
    L.check(P, "/v1/ledger/witnesses", receipts, "ledger.witness_registered")
    cp = op.checkpoint()
    body = parse_note(cp["note"])[0]
    line = cosign(body, witness, int(datetime.now(UTC).timestamp()))
    _, receipts, _ = op.post("/v1/ledger/cosignatures", {"size": cp["size"], "line": line})
    # the record is sequenced now, checkpointed with the next change: the cosigned checkpoint stays latest
    assert receipts == [] and op.checkpoint()["size"] == cp["size"]
    assert _payload(world, "ledger.cosigned")["size"] == cp["size"]
    with Session(world.exchange.engine) as s:
        cosigned = s.scalars(select(EventRow.id).where(EventRow.type == "ledger.cosigned")).one()

    # registry
    prov = onboard(world, "Trip Holder", ["provider", "consumer"])
    L.check(P, "/v1/ledger/cosignatures", [op.receipt(cosigned)], "ledger.cosigned")
    buyer = onboard(world, "Buyer", ["consumer"])
    other = onboard(world, "Objector", ["consumer"])
    fund(world, buyer, 1_000_000)
    trips = write_trips(tmp_path / "t.csv", seed=3)
    res = prov.client.register_resource(
        name="Trips",
        sector="transport",
        lawful_source="contracts",
        analysis=analysis_of(trips),
        published=True,
    )
    L.check(P, "/v1/resources", res.receipts, "resource.registered")
    rid = res.value.id
    L.check(
        P,
        "/v1/resources/{resource_id}/classification",
        op.resource_action(rid, "classification", {"grade": "general", "reason": "ok"}).receipts,
        "resource.classified",
    )
    changed = write_trips(tmp_path / "t2.csv", seed=3, extra=5)
    L.check(
        P,
        "/v1/resources/{resource_id}/change",
        prov.client.resource_action(rid, "change", {"analysis": analysis_of(changed)}).receipts,
    )
    L.check(
        P,
        "/v1/resources/{resource_id}/renew",
        prov.client.resource_action(rid, "renew", {"valid_days": 500}).receipts,
        "resource.renewed",
    )
    L.check(
        P,
        "/v1/resources/{resource_id}/unpublish",
        prov.client.resource_action(rid, "unpublish").receipts,
        "resource.unpublished",
    )
    L.check(
        P,
        "/v1/resources/{resource_id}/publish",
        prov.client.resource_action(rid, "publish").receipts,
        "resource.published",
    )
    later = datetime.now(UTC) + timedelta(days=30)
    g = prov.client.grant_right(
        rid,
        kind="processing_use",
        grantee_id=other.participant_id,
        purposes=["research"],
        territories=["CN"],
        valid_until=later,
    )
    L.check(P, "/v1/resources/{resource_id}/rights", g.receipts, "right.granted")
    _, receipts, _ = prov.client.post(f"/v1/rights/{g.value.id}/revoke", {"reason": "ended"})
    L.check(P, "/v1/rights/{right_id}/revoke", receipts, "right.revoked")
    _, receipts, _ = op.post(
        "/v1/classification/rules", {"rules": op.get("/v1/classification/rules")["rules"]}
    )
    L.check(P, "/v1/classification/rules", receipts, "classification.rules_updated")

    # certificates are issued on first request: that GET is a change too
    cert_before = len(L.seen)
    ex = world.exchange
    ex.ledger.sequence_pending()
    ex.ledger.publish()
    app_client = prov.client
    resp = app_client.request("GET", f"/v1/resources/{rid}/certificate")
    assert resp.status_code == 200
    issued = _payload(world, "certificate.issued")
    assert issued["resource"] == rid and issued["document_digest"] == digest(resp.json())
    del cert_before

    # public data: a public body authorises an operator
    body_p = onboard(world, "City Data Bureau", ["provider"])
    with Session(world.exchange.engine) as s:
        from datavalley.identity.tables import ParticipantRow

        row = s.get(ParticipantRow, body_p.participant_id)
        assert row is not None
        row.kind = "public_body"
        s.commit()
    pub = body_p.client.register_resource(
        name="Bus stops",
        sector="transport",
        lawful_source="public records",
        public_data=True,
        analysis=analysis_of(write_trips(tmp_path / "pub.csv", seed=5)),
        published=True,
    ).value.id
    op.resource_action(pub, "classification", {"grade": "general", "reason": "ok"})
    _, receipts, _ = body_p.client.post(
        f"/v1/resources/{pub}/public-data-authorisations",
        {
            "operator_id": prov.participant_id,
            "purposes": ["research"],
            "territories": ["CN"],
            "valid_until": later.isoformat(),
        },
    )
    L.check(
        P, "/v1/resources/{resource_id}/public-data-authorisations", receipts, "right.public_data_authorised"
    )

    # objections, transfer, cancellation, revocation (on resources of their own)
    r2 = prov.client.register_resource(
        name="Trips 2",
        sector="transport",
        lawful_source="contracts",
        analysis=analysis_of(write_trips(tmp_path / "t3.csv", seed=8)),
        published=True,
    ).value.id
    ob = other.client.file_objection(r2, "this is our data")
    L.check(P, "/v1/resources/{resource_id}/objections", ob.receipts, "objection.filed")
    _, receipts, _ = op.post(f"/v1/objections/{ob.value.id}/resolve", {"upheld": False, "resolution": "no"})
    L.check(P, "/v1/objections/{objection_id}/resolve", receipts, "objection.resolved")
    _, receipts, _ = prov.client.post(f"/v1/resources/{r2}/transfer", {"to_id": buyer.participant_id})
    L.check(P, "/v1/resources/{resource_id}/transfer", receipts, "right.transferred")
    r3 = prov.client.register_resource(
        name="Trips 3",
        sector="transport",
        lawful_source="contracts",
        analysis=analysis_of(write_trips(tmp_path / "t4.csv", seed=9)),
    ).value.id
    L.check(
        P,
        "/v1/resources/{resource_id}/cancel",
        prov.client.resource_action(r3, "cancel", {"reason": "obsolete"}).receipts,
        "resource.cancelled",
    )
    r4 = prov.client.register_resource(
        name="Trips 4",
        sector="transport",
        lawful_source="contracts",
        analysis=analysis_of(write_trips(tmp_path / "t5.csv", seed=10)),
    ).value.id
    L.check(
        P,
        "/v1/resources/{resource_id}/revoke",
        op.resource_action(r4, "revoke", {"reason": "unlawful"}).receipts,
        "resource.revoked",
    )

    # products
    created = prov.client.create_product(
        name="Trip analytics",
        kind="private_analytics",
        resource_ids=[rid],
        price={"model": "per_query", "amount": 500},
        terms=ANALYTICS_TERMS,
    )
    L.check(P, "/v1/products", created.receipts, "product.created")
    pid2 = created.value.id
    L.check(
        P,
        "/v1/products/{product_id}/submit",
        prov.client.product_action(pid2, "submit").receipts,
        "product.submitted",
    )
    _, _, reg_token = world.onboard("Regulator", ["regulator"], kind="public_body")
    regulator = world.client_for(reg_token)
    L.check(
        P,
        "/v1/products/{product_id}/regulator-approval",
        regulator.product_action(pid2, "regulator-approval", {"note": "fine"}).receipts,
        "product.regulator_approved",
    )
    assert _payload(world, "product.regulator_approved")["note_digest"] == digest({"note": "fine"})
    L.check(
        P,
        "/v1/products/{product_id}/review",
        op.product_action(pid2, "review", {"approve": True, "note": "ok"}).receipts,
        "product.listed",
    )

    # contracts: request, offer, accept, both signatures, use, suspend, terminate (refund), dispute
    c = buyer.client.request_contract(pid2, purpose="insurance-pricing")
    L.check(P, "/v1/contracts", c.receipts, "contract.requested")
    cid = c.value.id
    L.check(
        P,
        "/v1/contracts/{contract_id}/offer",
        prov.client.contract_action(cid, "offer").receipts,
        "contract.offered",
    )
    L.check(
        P,
        "/v1/contracts/{contract_id}/accept",
        buyer.client.contract_action(cid, "accept").receipts,
        "contract.accepted",
    )
    L.check(
        P,
        "/v1/contracts/{contract_id}/sign",
        prov.client.sign_agreement(cid, prov.key).receipts,
        "contract.agreed",
    )
    L.check(
        P,
        "/v1/contracts/{contract_id}/sign",
        buyer.client.sign_agreement(cid, buyer.key).receipts,
        "contract.verified",
        "contract.finalized",
    )
    L.check(P, "/v1/contracts/{contract_id}/uses", use(buyer, cid).receipts, "contract.used")
    L.check(
        P,
        "/v1/contracts/{contract_id}/suspend",
        prov.client.contract_action(cid, "suspend", {"suspended": True, "reason": "breach"}).receipts,
        "contract.suspended",
    )
    assert _payload(world, "contract.suspended")["reason_digest"] == digest({"reason": "breach"})
    prov.client.contract_action(cid, "suspend", {"suspended": False, "reason": "cured"})
    ev = buyer.client.get(f"/v1/contracts/{cid}")
    del ev
    evidence = use(buyer, cid, 1).receipts
    d = buyer.client.open_dispute(cid, claim="wrong answer", evidence=evidence)
    L.check(P, "/v1/contracts/{contract_id}/disputes", d.receipts, "dispute.opened")
    L.check(
        P,
        "/v1/disputes/{dispute_id}/rule",
        op.rule_dispute(d.value.id, reason="partly right", refund=100).receipts,
        "dispute.ruled",
    )
    assert _payload(world, "dispute.ruled")["reason_digest"] == digest({"reason": "partly right"})
    L.check(
        P,
        "/v1/contracts/{contract_id}/terminate",
        buyer.client.contract_action(cid, "terminate", {"reason": "done"}).receipts,
        "contract.terminated",
        "contract.refunded",
    )
    refund = _payload(world, "contract.refunded")
    assert refund["id"] == cid and refund["amount"] > 0
    direct = prov.client.post(
        "/v1/contracts/offers",
        {"product_id": pid2, "consumer_id": buyer.participant_id, "purpose": "risk-control"},
    )
    L.check(P, "/v1/contracts/offers", direct[1], "contract.offered")
    L.check(
        P,
        "/v1/products/{product_id}/delist",
        prov.client.product_action(pid2, "delist", {"reason": "retired"}).receipts,
        "product.delisted",
    )
    assert _payload(world, "product.delisted")["reason_digest"] == digest({"reason": "retired"})

    # money
    dep = buyer.client.deposit(700, "bank ref 1")
    L.check(P, "/v1/payments/deposits", dep.receipts, "payment.requested")
    _, receipts, _ = op.post(f"/v1/payments/{dep.value.id}/confirm", {"confirmed": True})
    L.check(P, "/v1/payments/{payment_id}/confirm", receipts, "payment.confirmed")
    _, receipts, _ = buyer.client.post("/v1/payments/withdrawals", {"amount": 100, "reference": "payout"})
    L.check(P, "/v1/payments/withdrawals", receipts, "payment.requested")
    assert _payload(world, "payment.requested")["amount"] == 100
    _data, receipts, _ = op.post("/v1/settlement/run")
    L.check(P, "/v1/settlement/run", receipts, "settlement.run")

    # cross-border: a member list (personal information) on a Guizhou node, delivered to a German consumer
    X = "/v1/crossborder"
    members_csv = write_members(tmp_path / "members.csv", 300)
    analysed = analyse_source(str(members_csv), sector="retail")
    members = prov.client.register_resource(
        name="Members",
        sector="retail",
        lawful_source="membership terms",
        analysis=registration_payload(analysed),
        published=True,
    ).value.id
    NodeRegistry(world.home).record(members, location_of(analysed.source, analysed.fingerprint))
    op.resource_action(members, "classification", {"grade": "general", "reason": "reviewed"})
    german = foreign(world, "Rhein Marktforschung GmbH")
    facts = op.request("PUT", f"{X}/participants/{prov.participant_id}/facts", json={"ciio": False}).json()
    L.check(
        "PUT", f"{X}/participants/{{participant_id}}/facts", facts["receipts"], "crossborder.facts_attested"
    )
    evidence_text = "inspection report 2026-11"
    _, receipts, _ = op.post(
        f"{X}/participants/{german.participant_id}/nodes",
        {"jurisdiction": "DE", "site": "Frankfurt colocation", "evidence": evidence_text},
    )
    L.check(P, f"{X}/participants/{{participant_id}}/nodes", receipts, "crossborder.node_attested")
    attested = _payload(world, "crossborder.node_attested")
    assert attested["evidence"] == digest({"evidence": evidence_text}) and "site" not in attested
    held = prov.client.get_resource(members)
    sk = sketch.encode(resource_sketch(world.home, prov.participant_id, members, held.pii))
    _, receipts, _ = prov.client.post(f"{X}/resources/{members}/sketch", {"sketch": sk})
    L.check(P, f"{X}/resources/{{resource_id}}/sketch", receipts, "crossborder.sketch_submitted")
    assert _payload(world, "crossborder.sketch_submitted")["sketch"] == digest({"sketch": sk})
    delivery = list_product(
        world,
        prov,
        members,
        kind="file_delivery",
        price={"model": "per_query", "amount": 100},
        terms=FILE_TERMS,
    )
    xcid = contract_for(prov, german, delivery.id)
    _, receipts, _ = german.client.post(f"{X}/contracts/{xcid}/transfers", {"operation": "dv:deliver"})
    L.check(P, f"{X}/contracts/{{contract_id}}/transfers", receipts, "crossborder.transfer")
    _, receipts, _ = prov.client.post(
        f"{X}/records",
        {
            "kind": "standard_contract",
            "contract_id": xcid,
            "number": "GZ-SC-2026-0007",
            "evidence": "archive",
        },
    )
    L.check(P, f"{X}/records", receipts, "crossborder.record_filed")
    record_id = _payload(world, "crossborder.record_filed")["id"]
    _, receipts, _ = prov.client.post(f"{X}/records/{record_id}/revoke", {"reason": "superseded"})
    L.check(P, f"{X}/records/{{record_id}}/revoke", receipts, "crossborder.record_revoked")
    assert _payload(world, "crossborder.record_revoked")["reason"] == digest({"reason": "superseded"})

    # delivery (Delta Sharing): the German consumer's recipients and their sharing tokens
    D = "/v1/delivery"
    _, receipts, _ = german.client.post(f"{D}/contracts/{xcid}/tokens", {"recipient": "analyst"})
    L.check(
        P,
        f"{D}/contracts/{{contract_id}}/tokens",
        receipts,
        "delivery.recipient_added",
        "delivery.token_issued",
    )
    issued = _payload(world, "delivery.token_issued")
    assert issued["contract"] == xcid and not any(str(v).startswith("dvs_") for v in issued.values())
    _, receipts, _ = german.client.post(f"{D}/tokens/{issued['id']}/revoke")
    L.check(P, f"{D}/tokens/{{token_id}}/revoke", receipts, "delivery.token_revoked")
    german.client.post(f"{D}/contracts/{xcid}/tokens", {"recipient": "backup"})
    _, receipts, _ = prov.client.post(f"{D}/contracts/{xcid}/recipients/backup/revoke")
    L.check(
        P,
        f"{D}/contracts/{{contract_id}}/recipients/{{recipient}}/revoke",
        receipts,
        "delivery.recipient_revoked",
    )
    assert len(_payload(world, "delivery.recipient_revoked")["tokens"]) == 1

    # compute: a pool, a private SQL job placed on it and run by its worker, a placement round
    monkeypatch.setenv("DATAVALLEY_POOLS", f"__pool__={pool_worker.url}")  # replaced once the pool exists
    data = data_contract(world, prov, buyer, demo_data.write_trips(tmp_path / "ct.csv", 300))
    cloud = onboard(world, "Guiyang Cloud", ["provider"])
    pool, receipts, _ = cloud.client.post(
        "/v1/compute/pools", {"name": "Gui'an 2-core", "cluster": "guian", "cores": 2, "price": 28}
    )
    L.check(P, "/v1/compute/pools", receipts, "compute.pool_registered", "product.created")
    cloud.client.product_action(pool["product_id"], "submit")
    op.product_action(pool["product_id"], "review", {"approve": True})
    negotiate(cloud, buyer, pool["product_id"], purpose="compute", max_quantity=3600 * 20)
    monkeypatch.setenv("DATAVALLEY_POOLS", f"{pool['id']}={pool_worker.url}")
    monkeypatch.setenv("DATAVALLEY_POOL_TOKEN", pool_worker.token)
    job, receipts, _ = buyer.client.post(
        "/v1/compute/jobs", {"contract_id": data.id, "sql": COUNT_SQL, "latency_class": "interactive"}
    )
    L.check(P, "/v1/compute/jobs", receipts, "compute.job_submitted", "compute.job_placed")
    assert job["status"] == "placed" and job["pool_id"] == pool["id"]
    assert _payload(world, "compute.job_submitted")["sql"] == digest({"sql": COUNT_SQL})
    ran = buyer.client.request("POST", f"/v1/compute/jobs/{job['id']}/run", json={}).json()
    assert ran["job"]["status"] == "done" and pool_worker.worker.served == 1
    L.check(P, "/v1/compute/jobs/{job_id}/run", ran["receipts"], "compute.job_started", "compute.job_metered")
    metered = _payload(world, "compute.job_metered")
    assert metered["id"] == job["id"] and metered["amount"] == ran["job"]["amount"] > 0
    big, _, _ = buyer.client.post("/v1/compute/jobs", {"contract_id": data.id, "sql": COUNT_SQL, "cores": 4})
    assert big["status"] == "unplaced"
    _, receipts, _ = op.post("/v1/compute/rounds")
    L.check(P, "/v1/compute/rounds", receipts, "compute.job_placed")
    assert _payload(world, "compute.job_placed")["id"] == big["id"]

    # Routes that change nothing by design: called for real, they leave the ledger as it was.
    exempt = {
        # private SQL runs on the node beside the data: its use entry is checked in tests/node/test_query.py
        ("POST", "/v1/contracts/{contract_id}/queries"),
        # a what-if decision on a hypothetical transfer: Exchange.read, the engine is a pure function
        ("POST", f"{X}/decide"),
        # a leak trace reads the provider's recipients and scores the file in a temporary directory
        ("POST", f"{D}/trace"),
    }
    before = _entries(world)
    what_if = op.request("POST", f"{X}/decide", json={"origin": "CN", "recipient": "DE", "personal": True})
    assert what_if.json()["pathway"]
    leak = prov.client.request(
        "POST", f"{D}/trace", params={"filename": "leak.csv"}, content=members_csv.read_bytes()
    ).json()["data"]
    assert leak["rows"] == 300 and leak["attributed"] is None
    assert _entries(world) == before, "a route exempted as changing nothing wrote the ledger"

    spec = create_app(world.exchange).openapi()
    mutating = {
        (m.upper(), path)
        for path, ops in spec["paths"].items()
        for m in ops
        if m in ("post", "put", "patch", "delete") and path.startswith("/v1/")
    }
    not_exercised = sorted(mutating - set(L.seen) - exempt)
    assert not not_exercised, f"mutating routes the scenario does not exercise: {not_exercised}"
