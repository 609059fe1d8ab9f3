"""A product's ε budget and its max uses fit together at listing time; the listing spells out how many
queries of each cost the budget allows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import World
from datavalley.errors import Conflict
from datavalley.market.governance import MIN_EPSILON_PER_USE, QUERY_COSTS, budget_check, budget_plan
from market.conftest import ANALYTICS_TERMS, Party


def _submit(
    world: World, provider: Party, rid: str, terms: dict[str, object]
) -> tuple[str, dict[str, object]]:
    product = provider.client.create_product(
        name="Trip analytics",
        kind="private_analytics",
        resource_ids=[rid],
        price={"model": "per_query", "amount": 500},
        terms=terms,
    ).value
    submitted = provider.client.product_action(product.id, "submit").value
    [item] = [c for c in submitted.checklist if c["check"] == "privacy_budget_consistent"]
    return product.id, item


def test_listing_shows_the_queries_the_budget_allows_and_refuses_an_inconsistent_one(
    world: World, logistics: Party, trip_resource: str
) -> None:
    pid, item = _submit(world, logistics, trip_resource, ANALYTICS_TERMS)  # ε 3.0, 20 uses
    assert item["ok"] and item["plan"] == [
        {"epsilon": 0.1, "queries": 20},
        {"epsilon": 0.25, "queries": 12},
        {"epsilon": 0.5, "queries": 6},
        {"epsilon": 1.0, "queries": 3},
    ]
    assert "12 at ε=0.25" in item["detail"]
    listed = world.operator.product_action(pid, "review", {"approve": True}).value
    assert listed.status.value == "listed"
    assert any(c["check"] == "privacy_budget_consistent" for c in listed.checklist)

    greedy = {**ANALYTICS_TERMS, "max_uses": 500, "privacy": {**ANALYTICS_TERMS["privacy"], "epsilon": 3.0}}
    pid, item = _submit(world, logistics, trip_resource, greedy)
    assert not item["ok"] and "below the listed minimum" in str(item["detail"])
    with pytest.raises(Conflict, match="privacy_budget_consistent"):
        world.operator.product_action(pid, "review", {"approve": True})
    assert logistics.client.get_product(pid).status.value == "submitted"


@given(
    budget=st.floats(min_value=0.01, max_value=100, allow_nan=False),
    max_uses=st.one_of(st.none(), st.integers(min_value=1, max_value=10**6)),
)
def test_the_plan_never_promises_more_than_the_budget_or_the_use_limit(
    budget: float, max_uses: int | None
) -> None:
    terms = {"max_uses": max_uses, "privacy": {"epsilon": budget}}
    info = budget_plan("private_analytics", terms)
    assert info is not None
    assert [p["epsilon"] for p in info["plan"]] == list(QUERY_COSTS)
    counts = [p["queries"] for p in info["plan"]]
    assert counts == sorted(counts, reverse=True)  # dearer queries: never more of them
    for p in info["plan"]:
        assert p["queries"] * p["epsilon"] <= budget + 1e-9  # the budget pays for every listed query
        assert max_uses is None or p["queries"] <= max_uses
        # and one more would not fit (unless the use limit is what binds)
        assert (p["queries"] + 1) * p["epsilon"] > budget - 1e-9 or p["queries"] == max_uses
    check = budget_check("private_analytics", terms)
    assert check is not None
    assert check["ok"] == (max_uses is None or budget / max_uses >= MIN_EPSILON_PER_USE)
    assert math.isfinite(info["budget"])
