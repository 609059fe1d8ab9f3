"""Market fixtures: a logistics provider with a registered, confirmed trip resource, an insurer with a
registered Ed25519 key and money on account, and helpers that walk a contract to FINALIZED."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.orm import Session

from conftest import World
from datavalley.client import Client
from datavalley.market.accounts import invariants
from datavalley.market.model import Contract, Product
from rights.conftest import analysis_of, write_trips


@dataclass
class Party:
    participant_id: str
    member_id: str
    client: Client
    key: Ed25519PrivateKey
    token: str


def digest_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def onboard(world: World, name: str, roles: list[str]) -> Party:
    p, m, token = world.onboard(name, roles)
    client = world.client_for(token)
    key = Ed25519PrivateKey.generate()
    client.register_key(p.id, key)
    return Party(p.id, m.id, client, key, token)


def fund(world: World, party: Party, amount: int) -> None:
    pay = party.client.deposit(amount, f"bank ref {party.participant_id}").value
    world.operator.confirm_payment(pay.id)


def assert_money_ok(world: World) -> dict[str, Any]:
    """The money invariants hold (checked straight on the database, not through the API)."""
    with Session(world.exchange.engine) as s:
        report = invariants(s)
    assert report["ok"], report["problems"]
    return report


@pytest.fixture
def logistics(world: World) -> Party:
    return onboard(world, "Qiantong Logistics", ["provider", "consumer"])


@pytest.fixture
def insurer(world: World) -> Party:
    party = onboard(world, "Guizhou Mutual Insurance", ["consumer"])
    fund(world, party, 1_000_000)
    return party


@pytest.fixture
def trip_resource(world: World, logistics: Party, tmp_path: Path) -> str:
    path = write_trips(tmp_path / "trips.csv")
    rid = logistics.client.register_resource(
        name="Trips",
        sector="transport",
        lawful_source="driver service contracts",
        analysis=analysis_of(path),
        published=True,
    ).value.id
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "reviewed"})
    return rid


ANALYTICS_TERMS = {
    "purposes": ["insurance-pricing", "risk-control"],
    "regions": ["CN"],
    "max_uses": 20,
    "valid_days": 90,
    "privacy": {"min_group_size": 10, "epsilon": 3.0, "privacy_unit": "driver_id"},
}


def list_product(
    world: World,
    provider: Party,
    resource_id: str,
    *,
    price: dict[str, Any] | None = None,
    kind: str = "private_analytics",
    terms: dict[str, Any] | None = None,
) -> Product:
    product = provider.client.create_product(
        name="Trip analytics",
        kind=kind,
        resource_ids=[resource_id],
        price=price or {"model": "per_query", "amount": 500},
        terms=terms or ANALYTICS_TERMS,
        tags=["logistics", "freight"],
    ).value
    provider.client.product_action(product.id, "submit")
    return world.operator.product_action(product.id, "review", {"approve": True}).value


@pytest.fixture
def analytics(world: World, logistics: Party, trip_resource: str) -> Product:
    return list_product(world, logistics, trip_resource)


def negotiate(provider: Party, consumer: Party, product_id: str, **terms: Any) -> Contract:
    """REQUESTED → OFFERED → ACCEPTED → AGREED → VERIFIED → FINALIZED."""
    terms.setdefault("purpose", "insurance-pricing")
    c = consumer.client.request_contract(product_id, **terms).value
    provider.client.contract_action(c.id, "offer")
    consumer.client.contract_action(c.id, "accept")
    provider.client.sign_agreement(c.id, provider.key)
    return consumer.client.sign_agreement(c.id, consumer.key).value


def use(party: Party, contract_id: str, n: int = 0, **kw: Any) -> Any:
    body: dict[str, Any] = {
        "operation": "dv:aggregateQuery",
        "purpose": "insurance-pricing",
        "request_digest": digest_of(f"SELECT {n}"),
        "privacy_cost": 0.5,
        "min_group_size": 10,
    }
    body.update(kw)
    return party.client.record_use(contract_id, **body)
