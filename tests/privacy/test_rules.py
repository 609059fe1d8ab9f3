"""PrivacyRules: validation, and a contract may only narrow the product's rules."""

from __future__ import annotations

from typing import Any

import pytest

from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.privacy import PrivacyRules

PRODUCT = PrivacyRules(
    privacy_unit="driver_id",
    min_group_size=10,
    max_rows_per_unit=5,
    max_groups_per_unit=4,
    clamps={"freight_price": (0, 2000)},
    public_keys={"province": ("GD", "ZJ", "JS")},
    delta=1e-6,
    join_keys=(("trips.province", "provinces.code"),),
    public_tables=frozenset({"provinces"}),
    require_dp=False,
)


def test_narrowing_applies_stricter_values() -> None:
    contract = PRODUCT.narrow(
        min_group_size=20,
        max_rows_per_unit=2,
        max_groups_per_unit=1,
        clamps={"freight_price": (10, 500)},
        public_keys={"province": ("GD",)},
        delta=1e-8,
        join_keys=(),
        public_tables=frozenset(),
        require_dp=True,
    )
    assert contract.min_group_size == 20 and contract.max_rows_per_unit == 2
    assert contract.clamps["freight_price"] == (10.0, 500.0)
    assert contract.public_keys["province"] == ("GD",)
    assert contract.join_keys == () and contract.public_tables == frozenset() and contract.require_dp
    assert PRODUCT.narrow() == PRODUCT


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"min_group_size": 5}, "min_group_size"),
        ({"max_rows_per_unit": 6}, "max_rows_per_unit"),
        ({"max_groups_per_unit": 5}, "max_groups_per_unit"),
        ({"delta": 1e-3}, "delta"),
        ({"clamps": {"freight_price": (-1, 100)}}, "clamps[freight_price]"),
        ({"clamps": {"distance": (0, 1)}}, "clamps[distance]"),
        ({"public_keys": {"province": ("GD", "XX")}}, "public_keys[province]"),
        ({"public_keys": {"month": (1,)}}, "public_keys[month]"),
        ({"join_keys": (("trips.tag", "provinces.code"),)}, "join_keys"),
        ({"public_tables": frozenset({"provinces", "trips"})}, "public_tables"),
    ],
)
def test_loosening_is_refused(change: dict[str, Any], rule: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        PRODUCT.narrow(**change)
    assert info.value.details["rule"] == rule
    assert "contract cannot set" in info.value.message


def test_dp_cannot_be_switched_off() -> None:
    with pytest.raises(PolicyViolation, match="cannot be switched off"):
        PrivacyRules().narrow(require_dp=False)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_group_size": 0},
        {"max_rows_per_unit": 0},
        {"max_groups_per_unit": True},
        {"mechanism": "uniform"},
        {"delta": 1.5},
        {"clamps": {"x": (2, 1)}},
        {"clamps": {"x": (0, float("inf"))}},
        {"clamps": {"x": "wide"}},
        {"public_keys": {"x": ()}},
        {"public_keys": {"x": (1, 1)}},
        {"join_keys": (("a", "b.c"),)},
    ],
)
def test_invalid_rules(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        PrivacyRules(**kwargs)


def test_reserved_table_names() -> None:
    from datavalley.privacy import TableSpec

    with pytest.raises(InvalidInput, match="reserved"):
        TableSpec("dv__rows", {"a": "integer"})


def test_equal_rules_are_equal_however_spelled() -> None:
    a = PrivacyRules(clamps={"b": (0, 1), "a": (2, 3)}, join_keys=(("x.a", "y.b"),))
    b = PrivacyRules(clamps={"a": (2.0, 3.0), "b": (0.0, 1.0)}, join_keys=(("y.b", "x.a"),))
    assert a == b and a.to_json() == b.to_json()
