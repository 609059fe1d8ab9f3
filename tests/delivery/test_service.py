"""Delivery service on SQLite and PostgreSQL: tokens (hashed, expiring with the clock, revocable), the
node's metered reads (byte cap refused atomically), and who may do what."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import World
from datavalley import demo_data
from datavalley.delivery.server import DeliveryNode
from datavalley.delivery.tables import DeliveryReadRow
from datavalley.errors import BudgetExhausted, Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.registry import NodeRegistry
from market.conftest import Party, insurer, logistics, negotiate

__all__ = ["insurer", "logistics"]


@pytest.fixture
def contract_id(world: World, logistics: Party, insurer: Party, tmp_path: Path) -> str:
    path = demo_data.write_trips(tmp_path / "trips.csv", 300)
    analysis = analyse_source(str(path))
    rid = logistics.client.register_resource(
        name="Trips",
        sector="transport",
        lawful_source="driver contracts",
        analysis=registration_payload(analysis),
        published=True,
    ).value.id
    NodeRegistry(world.home).record(rid, location_of(analysis.source, analysis.fingerprint))
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "ok"})
    product = logistics.client.create_product(
        name="Trips extract",
        kind="file_delivery",
        resource_ids=[rid],
        price={"model": "per_row", "amount": 2},
        terms={
            "purposes": ["insurance-pricing"],
            "max_quantity": 100_000,
            "delivery": {"columns": ["trip_id", "dest_province", "fare_cny"], "max_bytes": 6_000},
        },
    ).value
    logistics.client.product_action(product.id, "submit")
    world.operator.product_action(product.id, "review", {"approve": True})
    return negotiate(logistics, insurer, product.id).id


def test_tokens_reads_and_the_byte_cap(
    world: World, logistics: Party, insurer: Party, contract_id: str
) -> None:
    data, receipts, _ = insurer.client.post(
        f"/v1/delivery/contracts/{contract_id}/tokens", {"recipient": "team", "ttl_days": 2}
    )
    assert receipts and data["profile"]["bearerToken"].startswith("dvs_")
    secret = data["profile"]["bearerToken"]
    node = DeliveryNode(world.exchange)
    grant = node.grant(secret)
    assert grant.contract_id == contract_id
    share, schema = node.share_name(grant), node.schema_name(grant)
    table = node.tables(grant)[0].name
    served = node.query(grant, share, schema, table, {}, "http://node")
    assert served.read is not None and served.read.rows == 300 and served.read.amount == 2 * 300
    assert 3_000 < served.read.bytes <= 6_000
    uses = insurer.client.uses(contract_id)
    assert len(uses) == 1 and uses[0].quantity == 300
    # the byte cap (6,000 bytes) cannot take a second copy: refused, nothing recorded or charged
    with pytest.raises(BudgetExhausted, match="bytes"):
        node.query(grant, share, schema, table, {}, "http://node")
    assert len(insurer.client.uses(contract_id)) == 1
    with world.exchange.session(write=False) as s:
        assert s.scalar(select(func.count()).select_from(DeliveryReadRow)) == 1
    # malformed requests change nothing either
    with pytest.raises(InvalidInput):
        node.query(grant, share, schema, table, {"version": "1"}, "http://node")
    with pytest.raises(NotFound):
        node.query(grant, share, schema, "nope", {}, "http://node")
    # tokens expire with the clock (ttl_days=2), before the contract does
    world.clock.advance(days=3)
    with pytest.raises(Unauthenticated, match="expired"):
        node.grant(secret)


def test_who_may_issue_and_revoke(world: World, logistics: Party, insurer: Party, contract_id: str) -> None:
    url = f"/v1/delivery/contracts/{contract_id}/tokens"
    with pytest.raises(Forbidden):
        logistics.client.post(url, {"recipient": "x"})
    for bad in ({"recipient": "Bad Name"}, {"ttl_days": 0}, {"endpoint": "ftp://x"}, {"colour": 1}):
        with pytest.raises(InvalidInput):
            insurer.client.post(url, bad)
    data, _, _ = insurer.client.post(url, {"recipient": "a"})
    node = DeliveryNode(world.exchange)
    assert node.grant(data["profile"]["bearerToken"]).recipient_id == data["recipient_id"]
    # the provider may cut a recipient off; a second revocation conflicts; the name stays retired
    logistics.client.post(f"/v1/delivery/contracts/{contract_id}/recipients/a/revoke")
    with pytest.raises(Conflict):
        logistics.client.post(f"/v1/delivery/contracts/{contract_id}/recipients/a/revoke")
    with pytest.raises(Unauthenticated):
        node.grant(data["profile"]["bearerToken"])
    with pytest.raises(Conflict):
        insurer.client.post(url, {"recipient": "a"})
    listed = insurer.client.get(f"/v1/delivery/contracts/{contract_id}/recipients")["items"]
    assert [(r["name"], r["active_tokens"]) for r in listed] == [("a", 0)]
    assert all("token" not in k or k == "active_tokens" for r in listed for k in r)
    # an outsider sees nothing, and only providers trace
    outsider = world.client_for(world.onboard("Other Co", ["consumer", "provider"])[2])
    with pytest.raises(NotFound):
        outsider.get(f"/v1/delivery/contracts/{contract_id}/recipients")
    with pytest.raises(Forbidden):
        insurer.client.request(
            "POST", "/v1/delivery/trace", content=b"a,b\n1,2\n", params={"filename": "x.csv"}
        )
