"""The ODRL policy engine on its own: build ↔ parse round trip, refusal of what it cannot enforce, and
evaluation that names every failed constraint."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from datavalley.errors import InvalidInput
from datavalley.market.policy import Terms, UseRequest, UseState, build_agreement, evaluate, parse

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def _terms(**kw: Any) -> Terms:
    base: dict[str, Any] = {
        "uid": "urn:datavalley:contract:c_1",
        "assigner": "urn:datavalley:participant:p_a",
        "assignee": "urn:datavalley:participant:p_b",
        "target": "urn:datavalley:product:prd_1",
        "action": "dv:aggregateQuery",
        "purposes": ("insurance-pricing",),
        "valid_from": T0,
        "valid_until": T0 + timedelta(days=30),
        "max_uses": 3,
        "regions": ("CN",),
        "min_group_size": 10,
        "privacy_budget": 1.5,
        "privacy_unit": "driver_id",
    }
    base.update(kw)
    return Terms(**base)


def _req(**kw: Any) -> UseRequest:
    base: dict[str, Any] = {
        "action": "dv:aggregateQuery",
        "purpose": "insurance-pricing",
        "region": "CN",
        "at": T0 + timedelta(days=1),
        "privacy_cost": 0.5,
        "min_group_size": 10,
    }
    base.update(kw)
    return UseRequest(**base)


def test_build_and_parse_round_trip() -> None:
    t = _terms(psi_modes=("cardinality",), max_quantity=100, duties=({"action": "compensate"},))
    doc = build_agreement(t)
    assert doc["@type"] == "Agreement" and "http://www.w3.org/ns/odrl.jsonld" in doc["@context"]
    assert {p["action"] for p in doc["prohibition"]} == {"dv:reidentify", "distribute"}
    assert parse(doc) == t


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update({"@type": "Offer"}), "must be 'Agreement'"),
        (lambda d: d.pop("assignee"), "assignee is required"),
        (lambda d: d["permission"].append(d["permission"][0]), "exactly one permission"),
        (lambda d: d["permission"][0].update({"action": "sell"}), "unknown action 'sell'"),
        (
            lambda d: d["permission"][0]["constraint"].append(
                {"leftOperand": "recipient", "operator": "eq", "rightOperand": "x"}
            ),
            "would not be enforced",
        ),
        (
            lambda d: d["permission"][0]["constraint"].append(
                {"leftOperand": "count", "operator": "lteq", "rightOperand": "ten"}
            ),
            "count needs an integer",
        ),
        (lambda d: d["permission"][0]["constraint"].pop(0), "purposes constraint is required"),
        (
            lambda d: d["permission"][0]["constraint"][2].update(
                {"rightOperand": {"@value": "2026-10-01T00:00:00Z"}}
            ),
            "ends before it starts",
        ),
    ],
)
def test_policies_we_cannot_enforce_are_refused(mutate: Any, message: str) -> None:
    doc = copy.deepcopy(build_agreement(_terms()))
    mutate(doc)
    with pytest.raises(InvalidInput, match=message):
        parse(doc)


def test_permitted_use_reports_what_is_left() -> None:
    d = evaluate(build_agreement(_terms()), _req(), UseState(uses=1, budget_spent=0.5))
    assert d.allowed and d.uses_left == 2 and d.budget_left == pytest.approx(1.0)


def test_every_failed_constraint_is_named() -> None:
    d = evaluate(
        _terms(),
        _req(
            action="dv:deliver",
            purpose="marketing",
            region="US",
            at=T0 + timedelta(days=31),
            privacy_cost=2.0,
            min_group_size=5,
        ),
        UseState(uses=3, budget_spent=0.0),
    )
    assert not d.allowed and not d.over_budget
    text = " | ".join(d.reasons)
    for fragment in (
        "dv:deliver",
        "marketing",
        "expired",
        "'US'",
        "all 3 permitted uses",
        "minimum group",
        "ε=2",
    ):
        assert fragment in text


def test_budget_alone_is_flagged_as_over_budget_and_exact_spend_is_allowed() -> None:
    t = _terms()
    assert evaluate(t, _req(privacy_cost=1.0), UseState(budget_spent=0.5)).allowed
    d = evaluate(t, _req(privacy_cost=1.0), UseState(budget_spent=0.6))
    assert not d.allowed and d.over_budget
    assert not evaluate(t, _req(at=T0 - timedelta(seconds=1)), UseState()).allowed
