"""Contracts end to end through the API: negotiation states, signed ODRL agreement, escrow, metered use,
refusals that move nothing, termination and refunds, with the money invariants checked throughout."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from conftest import World
from datavalley.errors import (
    BudgetExhausted,
    Conflict,
    Forbidden,
    InsufficientFunds,
    InvalidInput,
    NotFound,
    PolicyViolation,
)
from datavalley.market.model import Product
from datavalley.market.policy import parse
from market.conftest import Party, assert_money_ok, digest_of, fund, list_product, negotiate, onboard, use


def _available(party: Party) -> int:
    return next(b.balance for b in party.client.balances() if b.kind == "available")


def test_negotiation_walks_the_dataspace_states_and_binds_both_signatures(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    c = insurer.client.request_contract(analytics.id, purpose="insurance-pricing", max_uses=10).value
    assert c.state == "REQUESTED" and c.prepayment == 10 * 500
    assert logistics.client.contract_action(c.id, "offer").value.state == "OFFERED"
    accepted = insurer.client.contract_action(c.id, "accept").value
    assert accepted.state == "ACCEPTED" and accepted.agreement_digest is not None
    agreement = insurer.client.agreement(c.id)
    assert agreement["agreement"]["policy"] == accepted.policy
    assert logistics.client.sign_agreement(c.id, logistics.key).value.state == "AGREED"
    before = _available(insurer)
    final = insurer.client.sign_agreement(c.id, insurer.key)
    assert final.value.state == "FINALIZED" and final.value.escrow == 5000
    assert _available(insurer) == before - 5000
    types = [r["entry"] for r in final.receipts]
    assert len(types) >= 3  # verified, right granted, finalized — each on the ledger
    # the consumer now holds a processing & use right for the contract's term
    (right_id,) = final.value.right_ids
    rights = {r.id: r for r in insurer.client.rights()}
    assert (
        rights[right_id].kind == "processing_use"
        and rights[right_id].scope.valid_until == final.value.valid_until
    )
    # the stored policy is valid ODRL that our engine reads back
    terms = parse(final.value.policy)
    assert terms.max_uses == 10 and terms.min_group_size == 10 and terms.privacy_budget == 3.0
    assert "dv:reidentify" in terms.prohibitions and terms.action == "dv:aggregateQuery"
    assert_money_ok(world)


def test_signatures_must_verify_and_come_in_order(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    c = insurer.client.request_contract(analytics.id, purpose="insurance-pricing").value
    logistics.client.contract_action(c.id, "offer")
    with pytest.raises(Conflict, match="is OFFERED"):
        logistics.client.sign_agreement(c.id, logistics.key)
    insurer.client.contract_action(c.id, "accept")
    with pytest.raises(Conflict, match="needs AGREED"):  # the consumer cannot sign first
        insurer.client.sign_agreement(c.id, insurer.key)
    with pytest.raises(Forbidden, match="does not verify"):  # a key the provider never registered
        logistics.client.sign_agreement(c.id, Ed25519PrivateKey.generate())
    message = base64.b64decode(insurer.client.agreement(c.id)["message"])
    forged = base64.b64encode(logistics.key.sign(message + b"x")).decode()
    with pytest.raises(Forbidden):
        logistics.client.contract_action(c.id, "sign", {"signature": forged})
    with pytest.raises(InvalidInput, match="base64"):
        logistics.client.contract_action(c.id, "sign", {"signature": "not base64!"})
    assert insurer.client.get_contract(c.id).state == "ACCEPTED"


def test_insufficient_funds_move_nothing(world: World, logistics: Party, analytics: Product) -> None:
    poor = onboard(world, "Thin Wallet Insurance", ["consumer"])
    fund(world, poor, 1_000)
    c = poor.client.request_contract(analytics.id, purpose="insurance-pricing", max_uses=10).value
    logistics.client.contract_action(c.id, "offer")
    poor.client.contract_action(c.id, "accept")
    logistics.client.sign_agreement(c.id, logistics.key)
    with pytest.raises(InsufficientFunds, match="available balance"):
        poor.client.sign_agreement(c.id, poor.key)
    after = poor.client.get_contract(c.id)
    assert after.state == "AGREED" and after.consumer_signature is None and after.funded == 0
    assert _available(poor) == 1_000
    assert_money_ok(world)


def test_metered_uses_release_escrow_minus_fee(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    c = negotiate(logistics, insurer, analytics.id, max_uses=4)
    provider_before = _available(logistics)
    for n in range(3):
        u = use(insurer, c.id, n).value
        assert u.amount == 500 and u.uses_left == 4 - (n + 1)
    assert u.budget_left == pytest.approx(3.0 - 1.5)
    after = insurer.client.get_contract(c.id)
    assert after.released == 1500 and after.escrow == 500 and after.uses == 3
    fee = (500 * 200 + 5000) // 10_000
    assert _available(logistics) == provider_before + 3 * (500 - fee)
    statement = insurer.client.contract_statement(c.id)
    assert statement["fees"] == 3 * fee and statement["provider_net"] == 1500 - 3 * fee
    assert_money_ok(world)


def test_uses_beyond_the_policy_are_refused_and_charge_nothing(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    c = negotiate(logistics, insurer, analytics.id, max_uses=2)
    with pytest.raises(PolicyViolation, match="purpose 'marketing'"):
        use(insurer, c.id, purpose="marketing")
    with pytest.raises(PolicyViolation, match="region 'US'"):
        use(insurer, c.id, region="US")
    with pytest.raises(PolicyViolation, match="minimum group size of at least 10"):
        use(insurer, c.id, min_group_size=3)
    with pytest.raises(PolicyViolation, match="dv:intersect is not permitted"):
        use(insurer, c.id, operation="dv:intersect")
    with pytest.raises(BudgetExhausted, match="exceeds the budget"):
        use(insurer, c.id, privacy_cost=3.5)
    with pytest.raises(InvalidInput, match="request_digest"):
        use(insurer, c.id, request_digest="SELECT * FROM trips")
    assert insurer.client.get_contract(c.id).uses == 0 and insurer.client.get_contract(c.id).released == 0
    use(insurer, c.id, 1)
    use(insurer, c.id, 2)
    with pytest.raises(PolicyViolation, match="all 2 permitted uses"):
        use(insurer, c.id, 3)
    stranger = onboard(world, "Nosy Broker", ["consumer"])
    with pytest.raises(NotFound):
        use(stranger, c.id, 4)
    assert len(insurer.client.uses(c.id)) == 2
    assert_money_ok(world)


def test_budget_is_never_overdrawn_and_expiry_ends_use(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    c = negotiate(logistics, insurer, analytics.id, max_uses=20, valid_days=10)
    for n in range(6):
        use(insurer, c.id, n, privacy_cost=0.5)
    with pytest.raises(BudgetExhausted):
        use(insurer, c.id, 99, privacy_cost=0.01)
    assert insurer.client.get_contract(c.id).budget_spent == pytest.approx(3.0)
    c2 = negotiate(logistics, insurer, analytics.id, max_uses=5, valid_days=10)
    world.clock.advance(days=11)
    with pytest.raises(PolicyViolation, match="expired"):
        use(insurer, c2.id, 1)


def test_use_is_idempotent_per_node_key_and_idempotency_key(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    c = negotiate(logistics, insurer, analytics.id, max_uses=5)
    first = use(insurer, c.id, 1, node_key="node-q-1").value
    again = use(insurer, c.id, 1, node_key="node-q-1").value
    assert again.id == first.id and insurer.client.get_contract(c.id).uses == 1
    body = {
        "operation": "dv:aggregateQuery",
        "purpose": "insurance-pricing",
        "request_digest": digest_of("q2"),
        "privacy_cost": 0.1,
        "min_group_size": 10,
    }
    a = insurer.client.record_use(c.id, idempotency_key="k-2", **body)
    b = insurer.client.record_use(c.id, idempotency_key="k-2", **body)
    assert b.replayed and b.value.id == a.value.id
    with pytest.raises(Conflict, match="different request"):
        insurer.client.record_use(c.id, idempotency_key="k-2", **{**body, "privacy_cost": 0.2})
    assert insurer.client.get_contract(c.id).uses == 2
    assert_money_ok(world)


def test_suspension_and_termination_stop_use_refund_escrow_and_revoke_rights(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    c = negotiate(logistics, insurer, analytics.id, max_uses=10)
    use(insurer, c.id, 1)
    with pytest.raises(Forbidden):
        insurer.client.contract_action(c.id, "suspend", {"suspended": True})
    world.operator.contract_action(c.id, "suspend", {"suspended": True, "reason": "audit"})
    with pytest.raises(PolicyViolation, match="suspended"):
        use(insurer, c.id, 2)
    world.operator.contract_action(c.id, "suspend", {"suspended": False})
    use(insurer, c.id, 2)
    before = _available(insurer)
    ended = insurer.client.contract_action(c.id, "terminate", {"reason": "pricing model changed"}).value
    assert ended.state == "TERMINATED" and ended.refunded == 4000 and ended.escrow == 0
    assert _available(insurer) == before + 4000
    assert all(r.id not in ended.right_ids for r in insurer.client.rights())
    with pytest.raises(PolicyViolation, match="TERMINATED"):
        use(insurer, c.id, 3)
    with pytest.raises(Conflict):
        insurer.client.contract_action(c.id, "terminate", {"reason": "again"})
    assert_money_ok(world)


def test_orders_on_unlisted_or_delisted_products_are_refused(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    running = negotiate(logistics, insurer, analytics.id, max_uses=3)
    logistics.client.product_action(analytics.id, "delist", {"reason": "new version"})
    with pytest.raises((Conflict, NotFound)):
        insurer.client.request_contract(analytics.id, purpose="insurance-pricing")
    use(insurer, running.id, 1)  # delisting does not stop running contracts
    with pytest.raises(NotFound, match="prd_unknown"):
        insurer.client.request_contract("prd_unknown", purpose="insurance-pricing")
    draft = logistics.client.create_product(
        name="Unreviewed",
        kind="private_analytics",
        resource_ids=list(analytics.resource_ids),
        price={"model": "free", "amount": 0},
        terms=dict(analytics.terms),
    ).value
    with pytest.raises(NotFound):  # a draft is invisible to consumers
        insurer.client.request_contract(draft.id, purpose="insurance-pricing")


def test_terms_may_only_narrow_the_product(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    with pytest.raises(PolicyViolation, match="purpose 'marketing' is not offered"):
        insurer.client.request_contract(analytics.id, purpose="marketing")
    with pytest.raises(PolicyViolation, match="epsilon may only be lowered"):
        insurer.client.request_contract(analytics.id, purpose="risk-control", privacy={"epsilon": 10})
    with pytest.raises(PolicyViolation, match="min_group_size may only be raised"):
        insurer.client.request_contract(analytics.id, purpose="risk-control", privacy={"min_group_size": 2})
    with pytest.raises(PolicyViolation, match="at most 20 uses"):
        insurer.client.request_contract(analytics.id, purpose="risk-control", max_uses=50)
    c = insurer.client.request_contract(
        analytics.id, purpose="risk-control", privacy={"epsilon": 1.0, "min_group_size": 25}, max_uses=5
    ).value
    assert c.state == "REQUESTED"
    assert insurer.client.contracts(state="REQUESTED")[0].id == c.id


def test_a_directly_negotiated_deal_ends_in_the_same_contract(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    with pytest.raises(Forbidden):  # only the product's provider offers it directly
        insurer.client.offer_direct(analytics.id, insurer.participant_id, purpose="insurance-pricing")
    with pytest.raises(NotFound):
        logistics.client.offer_direct(analytics.id, "p_nobody", purpose="insurance-pricing")
    offer = logistics.client.offer_direct(
        analytics.id,
        insurer.participant_id,
        purpose="risk-control",
        max_uses=2,
        price={"model": "per_query", "amount": 350},
    ).value
    assert offer.state == "OFFERED" and offer.channel == "direct" and offer.prepayment == 700
    insurer.client.contract_action(offer.id, "accept")
    logistics.client.sign_agreement(offer.id, logistics.key)
    final = insurer.client.sign_agreement(offer.id, insurer.key).value
    assert final.state == "FINALIZED" and final.escrow == 700
    assert use(insurer, offer.id, 1, purpose="risk-control").value.amount == 350
    assert_money_ok(world)


def test_contract_lists_are_cursor_paginated_and_scoped(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    made = [
        insurer.client.request_contract(analytics.id, purpose="insurance-pricing").value.id for _ in range(3)
    ]
    first = insurer.client.get("/v1/contracts", limit=2)
    assert [c["id"] for c in first["items"]] == made[:2] and first["next_cursor"]
    second = insurer.client.get("/v1/contracts", limit=2, cursor=first["next_cursor"])
    assert [c["id"] for c in second["items"]] == made[2:] and second["next_cursor"] is None
    assert [c.id for c in logistics.client.contracts()] == made  # the provider sees them too
    assert onboard(world, "Bystander", ["consumer"]).client.contracts() == []
    with pytest.raises(InvalidInput, match="cursor"):
        insurer.client.get("/v1/contracts", cursor="garbage")


PSI_TERMS = {
    "purposes": ["credit-risk"],
    "max_uses": 5,
    "psi_modes": ["cardinality", "aggregate"],
    "psi": {"id_column": "driver_phone", "id_kind": "phone", "columns": {"fare_cny": [0, 4000]}},
    "privacy": {"epsilon": 2.0, "epsilon_per_session": 0.5},
}


def test_psi_products_and_both_nodes_recording_one_session(
    world: World, logistics: Party, insurer: Party, trip_resource: str
) -> None:
    for bad, field in (
        ({**PSI_TERMS, "psi": {"id_column": "driver_phone", "id_kind": "fax"}}, "terms.psi.id_kind"),
        ({**PSI_TERMS, "psi": {"id_column": "driver_phone", "id_kind": "phone"}}, "terms.psi.columns"),
        ({**PSI_TERMS, "privacy": {}}, "terms.privacy.epsilon"),
    ):
        with pytest.raises(InvalidInput) as err:
            logistics.client.create_product(
                name="psi",
                kind="set_intersection",
                resource_ids=[trip_resource],
                price={"model": "per_query", "amount": 100},
                terms=bad,
            )
        assert err.value.details["field"] == field
    product = list_product(world, logistics, trip_resource, kind="set_intersection", terms=PSI_TERMS)
    assert product.terms["psi"]["columns"] == {"fare_cny": [0, 4000]}
    c = negotiate(logistics, insurer, product.id, purpose="credit-risk", max_uses=2)
    assert parse(c.policy).psi_modes == ("aggregate", "cardinality") and parse(c.policy).privacy_budget == 2.0
    session = {
        "operation": "dv:intersect",
        "purpose": "credit-risk",
        "mode": "aggregate",
        "privacy_cost": 0.5,
        "request_digest": digest_of("transcript of session s1"),
        "node_key": "psi:s1",
    }
    with pytest.raises(PolicyViolation, match="mode 'intersection'"):
        logistics.client.record_use(c.id, **{**session, "mode": "intersection", "node_key": "psi:s0"})
    first = logistics.client.record_use(c.id, **session)  # the provider's node reserves before release
    second = insurer.client.record_use(c.id, **session)  # the consumer's node reports the same session
    assert second.value.id == first.value.id and insurer.client.get_contract(c.id).uses == 1
    assert [json.loads(base64.b64decode(r["entry"]))["type"] for r in second.receipts] == [
        "contract.use_attested"
    ]
    assert insurer.client.get_contract(c.id).budget_spent == pytest.approx(0.5)
    assert_money_ok(world)


def test_a_consumer_keeps_seeing_the_product_of_its_running_contract_after_delisting(
    world: World, logistics: Party, insurer: Party, analytics: Product
) -> None:
    negotiate(logistics, insurer, analytics.id, max_uses=3)
    logistics.client.product_action(analytics.id, "delist", {"reason": "v2"})
    assert insurer.client.get_product(analytics.id).status == "delisted"
    with pytest.raises(NotFound):
        onboard(world, "Stranger", ["consumer"]).client.get_product(analytics.id)
