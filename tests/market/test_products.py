"""Products and listing review: the compliance checklist decides, the operator cannot list past it,
core data is refused outright, important data waits for a regulator, delisting stops new orders."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import World
from datavalley.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyViolation
from market.conftest import ANALYTICS_TERMS, Party, list_product, onboard
from rights.conftest import analysis_of, write_trips


def _register(world: World, party: Party, tmp_path: Path, name: str, *, grade: str | None = "general") -> str:
    path = write_trips(tmp_path / f"{name}.csv", seed=sum(map(ord, name)))
    rid = party.client.register_resource(
        name=name,
        sector="transport",
        lawful_source="driver contracts",
        analysis=analysis_of(path),
        published=True,
    ).value.id
    if grade:
        world.operator.resource_action(rid, "classification", {"grade": grade, "reason": "reviewed"})
    return rid


def _draft(party: Party, rid: str, kind: str = "private_analytics", **kw: object) -> str:
    terms = kw.pop("terms", ANALYTICS_TERMS)
    return party.client.create_product(
        name="Trips",
        kind=kind,
        resource_ids=[rid],
        price={"model": "one_off", "amount": 9_900},
        terms=terms,
        **kw,  # type: ignore[arg-type]
    ).value.id


def test_checklist_blocks_listing_until_classification_is_confirmed(
    world: World, logistics: Party, tmp_path: Path
) -> None:
    rid = _register(world, logistics, tmp_path, "trips", grade=None)
    pid = _draft(logistics, rid)
    submitted = logistics.client.product_action(pid, "submit").value
    checks = {c["check"]: c for c in submitted.checklist}
    assert checks["lawful_source"]["ok"] and checks["rights_verified"]["ok"]
    assert not checks["classification_confirmed"]["ok"]
    with pytest.raises(Conflict, match="classification_confirmed"):
        world.operator.product_action(pid, "review", {"approve": True})
    with pytest.raises(InvalidInput, match="reason"):
        world.operator.product_action(pid, "review", {"approve": False})
    rejected = world.operator.product_action(
        pid, "review", {"approve": False, "note": "confirm the grade"}
    ).value
    assert rejected.status == "rejected" and rejected.review_note == "confirm the grade"
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "ok"})
    logistics.client.product_action(pid, "submit")
    assert world.operator.product_action(pid, "review", {"approve": True}).value.status == "listed"


def test_core_data_is_refused_and_important_data_needs_a_regulator(
    world: World, logistics: Party, tmp_path: Path
) -> None:
    core = _register(world, logistics, tmp_path, "grid", grade="core")
    with pytest.raises(PolicyViolation):
        pid = _draft(logistics, core)
        logistics.client.product_action(pid, "submit")
    important = _register(world, logistics, tmp_path, "freight", grade="important")
    pid = _draft(logistics, important)
    logistics.client.product_action(pid, "submit")
    with pytest.raises(Conflict, match="regulator"):
        world.operator.product_action(pid, "review", {"approve": True})
    with pytest.raises(Forbidden):
        world.operator.product_action(pid, "regulator-approval", {"note": "ok"})
    regulator = onboard(world, "Guizhou Big Data Bureau", ["regulator"])
    assert regulator.client.product_action(pid, "regulator-approval", {"note": "ok"}).value.regulator_approved
    assert world.operator.product_action(pid, "review", {"approve": True}).value.status == "listed"


def test_sensitive_personal_data_is_never_delivered_raw(
    world: World, logistics: Party, tmp_path: Path
) -> None:
    rid = _register(world, logistics, tmp_path, "trips")
    assert logistics.client.get_resource(rid).sensitive_pii  # resident ID numbers
    pid = _draft(logistics, rid, kind="file_delivery", terms={"purposes": ["audit"], "max_quantity": 1000})
    checks = {c["check"]: c for c in logistics.client.product_action(pid, "submit").value.checklist}
    assert not checks["no_raw_sensitive_pi"]["ok"]
    with pytest.raises(Conflict, match="no_raw_sensitive_pi"):
        world.operator.product_action(pid, "review", {"approve": True})


def test_only_holders_or_operators_build_products_and_inputs_are_validated(
    world: World, logistics: Party, insurer: Party, trip_resource: str
) -> None:
    other = onboard(world, "Copycat Data", ["provider"])
    with pytest.raises(Forbidden, match="neither holds"):
        _draft(other, trip_resource)
    with pytest.raises(Forbidden):  # the insurer is not a provider
        _draft(insurer, trip_resource)
    for price, field in (
        ({"model": "per_query", "amount": 1.5}, "price.amount"),
        ({"model": "subscription", "amount": 100}, "price.period_days"),
        ({"model": "barter", "amount": 1}, "price.model"),
        ({"model": "free", "amount": 5}, "price.amount"),
        ({"model": "per_row", "amount": 10, "tiers": [[10, 5], [5, 2]]}, "price.tiers"),
    ):
        with pytest.raises(InvalidInput) as err:
            logistics.client.create_product(
                name="x",
                kind="private_analytics",
                resource_ids=[trip_resource],
                price=price,
                terms=ANALYTICS_TERMS,
            )
        assert err.value.details["field"] == field
    with pytest.raises(InvalidInput, match=r"terms\.privacy"):
        logistics.client.create_product(
            name="x",
            kind="private_analytics",
            resource_ids=[trip_resource],
            price={"model": "free", "amount": 0},
            terms={"purposes": ["a"]},
        )
    with pytest.raises(NotFound):
        _draft(logistics, "res_missing")


def test_listed_products_are_searchable_and_drafts_are_private(
    world: World, logistics: Party, insurer: Party, trip_resource: str
) -> None:
    listed = list_product(world, logistics, trip_resource)
    draft = _draft(logistics, trip_resource)
    found = insurer.client.search_products("freight")
    assert [p.id for p in found.items] == [listed.id]
    assert {p.id for p in logistics.client.search_products().items} == {listed.id, draft}
    assert insurer.client.search_products(kind="set_intersection").items == []
    with pytest.raises(NotFound):
        insurer.client.get_product(draft)
    logistics.client.product_action(listed.id, "delist", {"reason": "v2"})
    assert insurer.client.search_products("freight").items == []
    with pytest.raises(Conflict):
        logistics.client.product_action(listed.id, "delist", {"reason": "again"})
