"""release: noise of the planned scale, suppression, public keys, thresholding and post-processing."""

from __future__ import annotations

import json
import math
import statistics

import duckdb
import pytest

from datavalley.errors import InvalidInput
from datavalley.privacy import DuckDBEngine, PrivacyRules, compile_query, release

from .conftest import PROVINCES, RARE_PROVINCE, SCHEMA, row_rules, unit_rules


def _laplace_variance(b: float) -> float:
    a = math.exp(-1.0 / b)
    return 2 * a / (1 - a) ** 2


def _noise(engine: DuckDBEngine, sql: str, rules: PrivacyRules, **budget: float) -> tuple[float, list[float]]:
    """Noise samples, in integer units, of a per-trip SUM (one group per trip via public keys)."""
    q = compile_query(sql, SCHEMA, rules, **budget)
    exact = engine.run(q)
    m = q.measures[0]
    truth = {r[0]: r[1] for r in exact.rows}
    samples = []
    for _ in range(2):
        for key, value in release(q, exact).rows:
            samples.append(round(value * m.fixed_point - truth[key]))
    return m.scale, samples


def test_laplace_noise_has_the_planned_variance(
    engine: DuckDBEngine, trip_rows: list[dict[str, object]]
) -> None:
    rules = row_rules(public_keys={"trip_id": tuple(range(len(trip_rows)))})
    b, noise = _noise(engine, "SELECT trip_id, SUM(distance) FROM trips GROUP BY trip_id", rules, epsilon=0.5)
    assert len(noise) == 2 * len(trip_rows) and all(float(v).is_integer() for v in noise)
    assert abs(statistics.fmean(noise)) < 0.1 * b
    assert statistics.variance(noise) == pytest.approx(_laplace_variance(b), rel=0.15)


def test_gaussian_noise_has_the_planned_variance(
    engine: DuckDBEngine, trip_rows: list[dict[str, object]]
) -> None:
    rules = row_rules(mechanism="gaussian", public_keys={"trip_id": tuple(range(len(trip_rows)))})
    sigma, noise = _noise(engine, "SELECT trip_id, SUM(distance) FROM trips GROUP BY trip_id", rules, rho=0.5)
    assert abs(statistics.fmean(noise)) < 0.1 * sigma
    # A discrete Gaussian's variance is at most sigma^2 and, at this sigma, equal to it for all purposes.
    assert statistics.variance(noise) == pytest.approx(sigma**2, rel=0.12)


def test_intervals_cover_the_exact_values(engine: DuckDBEngine) -> None:
    rules = unit_rules(public_keys={"month": tuple(range(1, 13)), "province": PROVINCES})
    q = compile_query(
        "SELECT province, month, COUNT(*) AS n, SUM(freight_price) AS s, AVG(distance) AS a FROM trips "
        "GROUP BY province, month",
        SCHEMA,
        rules,
        epsilon=0.3,
    )
    exact = engine.run(q)
    by = {m.name: i for i, m in enumerate(q.measures)}
    truth = {}
    for r in exact.rows:
        v = r[2:]
        fp_s = q.measures[by["sum:t0.freight_price"]].fixed_point
        avg_m = q.measures[by["csum:t0.distance"]]
        truth[(r[0], r[1])] = (
            v[by["rows"]],
            v[by["sum:t0.freight_price"]] / fp_s,
            avg_m.center + v[by["csum:t0.distance"]] / avg_m.fixed_point / v[by["nn:t0.distance"]],
        )
    hits = total = 0
    for _ in range(5):
        answer = release(q, exact)
        for row, cells in zip(answer.rows, answer.noise, strict=True):
            for value, cell in zip(truth[(row[0], row[1])], cells[2:], strict=True):
                assert cell is not None
                total += 1
                hits += cell.ci95[0] <= value <= cell.ci95[1]
    assert hits / total >= 0.93


def test_public_keys_are_all_released_and_filled(engine: DuckDBEngine) -> None:
    domain = (*PROVINCES, "XX")  # XX has no trips; XZ has trips but is not declared
    q = compile_query(
        "SELECT province, COUNT(*) AS n FROM trips GROUP BY province",
        SCHEMA,
        row_rules(public_keys={"province": domain}),
        epsilon=1.0,
    )
    answer = release(q, engine.run(q))
    assert [r[0] for r in answer.rows] == list(domain)
    assert answer.suppressed_groups == 0 and answer.threshold is None and answer.cost.delta == 0.0
    assert answer.rows[-1][1] < 30  # XX: a zero plus noise of scale 1


def test_dp_suppression_compares_noisy_unit_counts_with_k(engine: DuckDBEngine) -> None:
    rules = unit_rules(min_group_size=5, public_keys={"province": (*PROVINCES, RARE_PROVINCE, "XX")})
    q = compile_query(
        "SELECT province, SUM(distance) AS d FROM trips GROUP BY province", SCHEMA, rules, epsilon=5.0
    )
    answer = release(q, engine.run(q))
    assert sorted(r[0] for r in answer.rows) == sorted(PROVINCES)
    assert answer.suppressed_groups == 2  # XZ (one driver) and XX (none): counted from noisy values only


def test_exact_mode_suppresses_on_exact_unit_counts(engine: DuckDBEngine) -> None:
    q = compile_query(
        "SELECT province, COUNT(*) AS n FROM trips GROUP BY province",
        SCHEMA,
        unit_rules(require_dp=False, min_group_size=2),
    )
    answer = release(q, engine.run(q))
    assert RARE_PROVINCE not in [r[0] for r in answer.rows]
    assert answer.suppressed_groups == 1 and answer.cost.mechanism == "none"


def test_thresholding_hides_rare_keys(engine: DuckDBEngine) -> None:
    q = compile_query(
        "SELECT province, COUNT(*) AS n FROM trips GROUP BY province", SCHEMA, unit_rules(), epsilon=1.0
    )
    assert q.threshold is not None and q.threshold > 20
    exact = engine.run(q)
    assert RARE_PROVINCE in [r[0] for r in exact.rows]
    for _ in range(20):
        answer = release(q, exact)
        assert sorted(r[0] for r in answer.rows) == sorted(PROVINCES)
        assert answer.suppressed_groups is None  # how many failed the threshold is not DP: withheld


POST = [
    "SELECT province, COUNT(*) AS n FROM trips GROUP BY province HAVING n > 500 ORDER BY n DESC",
    "SELECT province, month, COUNT(*) AS n FROM trips GROUP BY province, month "
    "HAVING (n BETWEEN 20 AND 60 OR month IN (1, 12)) AND NOT province = 'ZJ' "
    "ORDER BY n, province DESC LIMIT 7",
    "SELECT province, AVG(distance) AS a FROM trips GROUP BY province ORDER BY 2 DESC LIMIT 2 OFFSET 1",
    "SELECT month, SUM(freight_price) AS s FROM trips GROUP BY month HAVING s / 2 > 1000 AND s IS NOT NULL "
    "ORDER BY month DESC",
    "SELECT tag, COUNT(*) AS n FROM trips GROUP BY tag HAVING tag LIKE '%a%' ORDER BY tag NULLS FIRST",
]


@pytest.mark.parametrize("sql", POST)
def test_post_processing_matches_sql(
    engine: DuckDBEngine, plain: duckdb.DuckDBPyConnection, sql: str
) -> None:
    q = compile_query(sql, SCHEMA, row_rules(require_dp=False))
    got = release(q, engine.run(q)).rows
    want = plain.execute(sql).fetchall()
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[:-1] == tuple(w[:-1]) and g[-1] == pytest.approx(w[-1])


def test_release_checks_the_digest(engine: DuckDBEngine) -> None:
    q1 = compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(), epsilon=1.0)
    q2 = compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(), epsilon=2.0)
    with pytest.raises(InvalidInput, match="another query"):
        release(q2, engine.run(q1))


def test_released_answer_is_json(engine: DuckDBEngine) -> None:
    q = compile_query(
        "SELECT trip_date, COUNT(*) AS n, AVG(distance) AS d FROM trips WHERE month = 1 GROUP BY trip_date",
        SCHEMA,
        row_rules(),
        epsilon=1.0,
    )
    body = json.loads(json.dumps(release(q, engine.run(q)).to_dict()))
    assert body["columns"] == ["trip_date", "n", "d"] and body["cost"]["epsilon"] == "1.0"
    assert body["suppressed_groups"] is None and all(isinstance(r[0], str) for r in body["rows"])
    assert all(set(cell) == {"scale", "ci95"} for row in body["noise"] for cell in row[1:])


def test_global_query_on_empty_selection(engine: DuckDBEngine) -> None:
    q = compile_query(
        "SELECT COUNT(*) AS n, AVG(distance) AS d FROM trips WHERE month > 99",
        SCHEMA,
        unit_rules(),
        epsilon=1.0,
    )
    (row,) = release(q, engine.run(q)).rows
    assert row[0] >= 0 and (row[1] is None or 0.0 <= row[1] <= 500.0)


def test_release_reports_the_rows_contribution_bounding_dropped(engine: DuckDBEngine) -> None:
    rules = unit_rules()  # m = 3 rows per (driver, group), g = 2 groups per driver
    q = compile_query(
        "SELECT province, COUNT(*) AS n FROM trips GROUP BY province", SCHEMA, rules, epsilon=5.0
    )
    exact = engine.run(q)
    j = [m.kind for m in q.measures].index("dropped")
    true_dropped = exact.rows[0][1 + j]
    # every driver has 5-15 trips and keeps at most 6: thousands of rows are dropped, each driver's
    # counted up to m·g = 6
    assert 300 * 6 * 0.5 < true_dropped <= 301 * 6 + 6
    answer = release(q, exact)
    assert answer.dropped_rows is not None
    value, cell = answer.dropped_rows
    assert cell.ci95[0] <= value <= cell.ci95[1] and abs(value - true_dropped) <= 10 * cell.scale
    body = answer.to_dict()
    assert body["droppedRows"]["value"] == value and body["intervals"].startswith("ci95 covers")
    row_level = compile_query("SELECT COUNT(*) AS n FROM trips", SCHEMA, row_rules(), epsilon=1.0)
    assert release(row_level, engine.run(row_level)).dropped_rows is None  # nothing can be dropped
