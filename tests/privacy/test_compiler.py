"""compile_query: stable digests, the sensitivity of each measure, and a cost that composes to the budget."""

from __future__ import annotations

import math

import opendp.prelude as dp
import pytest

from datavalley.errors import InvalidInput, PolicyViolation
from datavalley.privacy import compile_query
from datavalley.privacy.compiler import FIXED_POINT_BITS, measure_share

from .conftest import SCHEMA, row_rules, unit_rules

SAME = [
    "SELECT province, COUNT(*) AS n, AVG(distance) AS d FROM trips WHERE month <= 6 GROUP BY province",
    "select   province , count(*) as n, avg(distance) as d\nfrom trips\nwhere month<=6 group by province",
    'SELECT "province", Count(*) n, AVG(Distance) d FROM TRIPS x WHERE x.month <= 6 GROUP BY x.province',
    "SELECT t.province, COUNT(*) AS n, AVG(t.distance) AS d FROM trips t WHERE (t.month <= 6) "
    "GROUP BY 1 -- hi",
]


def test_equivalent_spellings_share_a_digest() -> None:
    digests = {compile_query(sql, SCHEMA, row_rules(), epsilon=1.0).digest for sql in SAME}
    assert len(digests) == 1
    assert next(iter(digests)).startswith("sha256:")


@pytest.mark.parametrize(
    ("sql", "rules", "budget"),
    [
        (
            SAME[0].replace("<= 6", "<= 7"),
            None,
            1.0,
        ),
        (
            SAME[0].replace("AS n", "AS m"),
            None,
            1.0,
        ),
        (SAME[0], row_rules(min_group_size=2), 1.0),
        (SAME[0], row_rules(clamps={"freight_price": (0.0, 2000.0), "distance": (0.0, 400.0)}), 1.0),
        (SAME[0], None, 0.5),
    ],
)
def test_digest_covers_query_rules_and_budget(sql: str, rules: object, budget: float) -> None:
    base = compile_query(SAME[0], SCHEMA, row_rules(), epsilon=1.0).digest
    other = compile_query(sql, SCHEMA, rules or row_rules(), epsilon=budget).digest  # type: ignore[arg-type]
    assert other != base


def test_digest_is_stable_across_calls() -> None:
    q1 = compile_query(SAME[0], SCHEMA, unit_rules(), epsilon=1.0)
    q2 = compile_query(SAME[0], SCHEMA, unit_rules(), epsilon=1.0)
    assert q1.digest == q2.digest and q1.exact_sql("spark") == q2.exact_sql("spark")


def test_laplace_cost_composes_over_all_measures() -> None:
    q = compile_query(
        "SELECT month, COUNT(*), COUNT(DISTINCT driver_id), SUM(freight_price), AVG(distance) "
        "FROM trips GROUP BY month",
        SCHEMA,
        unit_rules(),
        epsilon=2.0,
    )
    names = [m.name for m in q.measures]
    # AVG = noisy centred sum / noisy non-null count: two measures. Nothing hidden: units are selected.
    # ... plus the hidden count of rows the contribution bounds dropped (one number, sensitivity m·g)
    assert names == ["rows", "units", "sum:t0.freight_price", "csum:t0.distance", "nn:t0.distance", "dropped"]
    assert q.cost.epsilon == 2.0 and q.cost.rho is None and q.cost.delta == 1e-6
    assert math.fsum(m.cost for m in q.measures) <= 2.0
    assert math.fsum(m.cost for m in q.measures) == pytest.approx(2.0, rel=1e-9)
    for m in q.measures:
        # the dropped-rows count gets 10 % of ε, the five released measures 18 % each
        share = 0.2 if m.name == "dropped" else 1.8 / 5
        assert measure_share(2.0, q.measures, m) == pytest.approx(share)
        # OpenDP's map, not ours, gives each share; and scale = L1 / share up to the calibration nudge.
        laplace = dp.m.make_laplace(
            dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64"), m.scale
        )
        assert laplace.map(m.l1) == pytest.approx(m.cost) and m.cost <= share
        assert m.scale == pytest.approx(m.l1 / share, rel=1e-9)


def test_sensitivity_analysis() -> None:
    """A unit adds <= m rows to each of <= g groups; sums add <= m * (2^20 units + 1) per group."""
    rules = unit_rules(max_rows_per_unit=3, max_groups_per_unit=2)
    q = compile_query(
        "SELECT month, COUNT(*), COUNT(DISTINCT driver_id), SUM(freight_price), AVG(distance) "
        "FROM trips GROUP BY month",
        SCHEMA,
        rules,
        epsilon=1.0,
    )
    by = {m.name: m for m in q.measures}
    assert (by["rows"].per_group, by["rows"].l1) == (3, 6)
    assert (by["units"].per_group, by["units"].l1) == (1, 2)
    assert by["nn:t0.distance"].per_group == 3
    price = by["sum:t0.freight_price"]  # clamp [0, 2000]: bound 2000 -> 2^(20-11) units per unit of price
    assert price.fixed_point == 2.0 ** (FIXED_POINT_BITS - 11)
    assert price.per_group == 3 * (math.ceil(2000 * price.fixed_point) + 1)
    dist = by["csum:t0.distance"]  # clamp [0, 500], centred at 250: bound 250
    assert dist.center == 250.0 and dist.fixed_point == 2.0 ** (FIXED_POINT_BITS - 8)
    assert dist.l2 == pytest.approx(math.sqrt(2) * dist.per_group)


def test_row_units_have_unit_sensitivity_and_no_window() -> None:
    q = compile_query("SELECT month, COUNT(*) FROM trips GROUP BY month", SCHEMA, row_rules(), epsilon=1.0)
    assert [(m.per_group, m.l1) for m in q.measures] == [(1, 1)]
    assert q.measures[0].scale == pytest.approx(1.0)
    sql = q.exact_sql("duckdb")
    assert "ROW_NUMBER" not in sql and "WITH" not in sql


def test_public_keys_cap_groups_per_unit_and_skip_the_rank() -> None:
    rules = unit_rules(max_groups_per_unit=5, public_keys={"province": ("GD", "ZJ", "JS")})
    q = compile_query("SELECT province, COUNT(*) FROM trips GROUP BY province", SCHEMA, rules, epsilon=1.0)
    assert q.groups_per_unit == 3 and q.threshold is None and q.cost.delta == 0.0
    assert "ROW_NUMBER" not in q.exact_sql("duckdb")
    narrow = compile_query("SELECT month, COUNT(*) FROM trips GROUP BY month", SCHEMA, rules, epsilon=1.0)
    assert narrow.groups_per_unit == 5 and "ROW_NUMBER" in narrow.exact_sql("duckdb")


def test_threshold_from_delta() -> None:
    q = compile_query(
        "SELECT month, COUNT(*) FROM trips GROUP BY month", SCHEMA, row_rules(delta=1e-5), epsilon=1.0
    )
    b = q.measures[0].scale
    assert q.threshold == pytest.approx(1 + b * math.log(1 / 1e-5))
    gq = compile_query(
        "SELECT month, COUNT(*) FROM trips GROUP BY month",
        SCHEMA,
        unit_rules(mechanism="gaussian", delta=1e-5),
        rho=0.5,
    )
    units = gq.measures[gq.units_measure or 0]
    assert units.hidden and units.name == "units"
    assert gq.threshold == pytest.approx(1 + units.scale * math.sqrt(2 * math.log(2 / 1e-5)))
    assert gq.cost.rho == 0.5 and gq.cost.epsilon is None and gq.cost.delta == 1e-5


def test_gaussian_cost_is_zcdp() -> None:
    q = compile_query(
        "SELECT COUNT(*), SUM(distance) FROM trips", SCHEMA, row_rules(mechanism="gaussian"), rho=0.2
    )
    assert math.fsum(m.cost for m in q.measures) == pytest.approx(0.2)
    for m in q.measures:
        assert m.cost == pytest.approx(m.l2**2 / (2 * m.scale**2), rel=1e-6)


def test_global_aggregate_needs_no_threshold() -> None:
    q = compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(delta=0.0), epsilon=1.0)
    assert q.threshold is None and q.cost.delta == 0.0


def test_non_public_keys_need_delta() -> None:
    with pytest.raises(PolicyViolation, match="delta > 0"):
        compile_query(
            "SELECT month, COUNT(*) FROM trips GROUP BY month", SCHEMA, row_rules(delta=0.0), epsilon=1.0
        )


def test_hidden_unit_count_for_k_is_paid_for() -> None:
    q = compile_query("SELECT SUM(distance) FROM trips", SCHEMA, unit_rules(min_group_size=5), epsilon=1.0)
    assert [m.name for m in q.measures] == ["sum:t0.distance", "dropped", "units"] and q.measures[2].hidden
    assert math.fsum(m.cost for m in q.measures) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, PolicyViolation, "require differential privacy"),
        ({"rho": 1.0}, InvalidInput, "epsilon"),
        ({"epsilon": 1.0, "rho": 1.0}, InvalidInput, "not both"),
        ({"epsilon": 0.0}, InvalidInput, "positive"),
        ({"epsilon": float("nan")}, InvalidInput, "positive"),
    ],
)
def test_budget_arguments(kwargs: dict[str, float], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(), **kwargs)


def test_exact_mode_has_no_cost() -> None:
    q = compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(require_dp=False))
    assert q.mode == "none" and q.cost.epsilon is None and q.cost.rho is None
    assert q.describe()["cost"]["mechanism"] == "none"
