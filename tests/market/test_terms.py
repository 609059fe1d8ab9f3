"""Product terms: a valid commented template per kind, the JSON Schema in the OpenAPI, and the checks of
terms against the registered schema at creation (nothing is written when they fail)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import World
from datavalley.errors import InvalidInput
from datavalley.market.model import ProductKind
from datavalley.market.products import parse_terms
from datavalley.market.terms import TERMS_SCHEMA, commented_template, strip_comments, template
from market.conftest import Party
from rights.conftest import analysis_of


@pytest.mark.parametrize("kind", [k.value for k in ProductKind])
def test_commented_template_is_valid_terms(kind: str) -> None:
    text = commented_template(kind)
    assert text.lstrip().startswith("//") and "\n  // " in text
    parsed = json.loads(strip_comments(text))
    assert parsed == template(kind)
    assert parse_terms(ProductKind(kind), parsed)["purposes"]
    assert set(parsed) <= set(TERMS_SCHEMA["properties"])


def test_terms_schema_is_in_the_openapi(world: World) -> None:
    spec = world.operator.get("/openapi.json")
    terms = spec["components"]["schemas"]["NewProduct"]["properties"]["terms"]
    assert terms["title"] == "ProductTerms" and "psi" in terms["properties"]
    assert terms["properties"]["psi"]["properties"]["id_kind"]["enum"] == ["phone", "cn_ric", "text"]


def _resource(world: World, party: Party, tmp_path: Path, fare: str) -> str:
    path = tmp_path / "fares.csv"
    lines = ["driver_phone,driver_id,fare"]
    lines += [f"1380000{i:04d},d{i % 30},{fare.format(i=i)}" for i in range(120)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rid = party.client.register_resource(
        name="Fares", sector="transport", lawful_source="contracts", analysis=analysis_of(path)
    ).value.id
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "reviewed"})
    return rid


def _create(party: Party, rid: str, kind: str, terms: dict[str, Any]) -> Any:
    return party.client.create_product(
        name="p", kind=kind, resource_ids=[rid], price={"model": "per_query", "amount": 100}, terms=terms
    )


def _products(party: Party) -> int:
    return len(party.client.search_products(status="draft").items)


def test_psi_aggregate_on_a_float_column_is_refused(world: World, logistics: Party, tmp_path: Path) -> None:
    rid = _resource(world, logistics, tmp_path, "{i}.25")
    terms = template("set_intersection") | {
        "psi": {"id_column": "driver_phone", "id_kind": "phone", "columns": {"fare": [0, 100]}}
    }
    before = _products(logistics)
    with pytest.raises(InvalidInput, match=r"'fare' is float; aggregate PSI sums integer columns"):
        _create(logistics, rid, "set_intersection", terms)
    missing = terms | {"psi": {"id_column": "phone_no", "id_kind": "phone", "columns": {"fare": [0, 9]}}}
    with pytest.raises(InvalidInput, match="'phone_no' is not a column"):
        _create(logistics, rid, "set_intersection", missing)
    assert _products(logistics) == before


def test_privacy_unit_must_be_a_column_and_budget_must_pay_for_sessions(
    world: World, logistics: Party, tmp_path: Path
) -> None:
    rid = _resource(world, logistics, tmp_path, "{i}")
    analytics = template("private_analytics") | {"tables": {"fares": rid}}
    with pytest.raises(InvalidInput, match="privacy_unit 'nobody' is not a column"):
        _create(
            logistics,
            rid,
            "private_analytics",
            analytics | {"privacy": {**analytics["privacy"], "privacy_unit": "nobody"}},
        )
    psi = template("set_intersection") | {
        "psi_modes": ["aggregate"],
        "max_uses": 5,
        "psi": {"id_column": "driver_phone", "id_kind": "phone", "columns": {"fare": [0, 500]}},
    }
    with pytest.raises(InvalidInput, match=r"sell up to 5 aggregate sessions but ε 2\.0 pays for 2"):
        _create(logistics, rid, "set_intersection", psi)
    ok = _create(logistics, rid, "set_intersection", psi | {"max_uses": 2}).value
    assert ok.terms["max_uses"] == 2
    assert _create(logistics, rid, "private_analytics", analytics).value.terms["privacy"]["privacy_unit"] == (
        "driver_id"
    )
