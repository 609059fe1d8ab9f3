"""Cross-border fixtures: a Guizhou retailer (CN) with a member list on its node, and German consumers."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from conftest import World
from datavalley.crossborder.demo import write_members
from datavalley.events import EventRow
from datavalley.market.model import Product
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.registry import NodeRegistry
from market.conftest import Party, digest_of, fund, list_product, onboard

_hrb = itertools.count(100)
MEMBERS = 300


def foreign(world: World, name: str, country: str = "DE", roles: list[str] | None = None) -> Party:
    """A verified foreign organisation (registered in ``country``) with a key and money."""
    op = world.operator
    p, admin = op.register_participant(
        name=name, kind="enterprise", registry_id=f"HRB {next(_hrb)}", roles=roles or ["consumer"],
        admin_name=f"admin of {name}", country=country,
    ).value  # fmt: skip
    op.change_participant_status(p.id, "verify")
    token = op.issue_token(admin.id).value.secret
    client = world.client_for(token)
    key = Ed25519PrivateKey.generate()
    client.register_key(p.id, key)
    party = Party(p.id, admin.id, client, key, token)
    fund(world, party, 1_000_000)
    return party


@pytest.fixture
def retailer(world: World) -> Party:
    return onboard(world, "Qianhuo Retail", ["provider", "consumer"])


@pytest.fixture
def german(world: World) -> Party:
    return foreign(world, "Rhein Marktforschung GmbH")


@pytest.fixture
def members_file(tmp_path: Path) -> Path:
    return write_members(tmp_path / "members.csv", MEMBERS)


@pytest.fixture
def members(world: World, retailer: Party, members_file: Path) -> str:
    """The member list, registered from the retailer's node (node registry records where it lives)."""
    a = analyse_source(str(members_file), sector="retail")
    rid = retailer.client.register_resource(
        name="Members", sector="retail", lawful_source="membership terms", analysis=registration_payload(a),
        tags=["retail"], published=True,
    ).value.id  # fmt: skip
    NodeRegistry(world.home).record(rid, location_of(a.source, a.fingerprint))
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "reviewed"})
    return rid


AGG_TERMS = {
    "purposes": ["market-research"], "regions": ["CN", "DE", "US"], "max_uses": 20, "valid_days": 90,
    "privacy": {"min_group_size": 10, "epsilon": 3.0, "privacy_unit": "member_id"},
}  # fmt: skip
FILE_TERMS = {
    "purposes": ["market-research"],
    "regions": ["CN", "DE", "US"],
    "valid_days": 30,
    "max_uses": 10,
}


@pytest.fixture
def aggregate_product(world: World, retailer: Party, members: str) -> Product:
    return list_product(world, retailer, members, terms=AGG_TERMS)


@pytest.fixture
def delivery_product(world: World, retailer: Party, members: str) -> Product:
    return list_product(
        world, retailer, members, kind="file_delivery", price={"model": "per_query", "amount": 100},
        terms=FILE_TERMS,
    )  # fmt: skip


def contract_for(provider: Party, consumer: Party, product_id: str) -> str:
    c = consumer.client.request_contract(product_id, purpose="market-research").value
    provider.client.contract_action(c.id, "offer")
    consumer.client.contract_action(c.id, "accept")
    provider.client.sign_agreement(c.id, provider.key)
    return consumer.client.sign_agreement(c.id, consumer.key).value.id


def deliver(provider: Party, contract_id: str, n: int = 0, **kw: Any) -> Any:
    body: dict[str, Any] = {
        "operation": "dv:deliver", "purpose": "market-research", "region": "DE",
        "request_digest": digest_of(f"delivery {contract_id} {n}"), "quantity": MEMBERS,
    }  # fmt: skip
    body.update(kw)
    return provider.client.record_use(contract_id, **body)


def events(world: World, type_: str) -> list[EventRow]:
    with Session(world.exchange.engine) as s:
        return list(s.scalars(select(EventRow).where(EventRow.type == type_).order_by(EventRow.id)))
