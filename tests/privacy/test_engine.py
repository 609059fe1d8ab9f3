"""DuckDBEngine: exact values agree with plain DuckDB, and contribution bounds hold on neighbouring data."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from datavalley.privacy import CompiledQuery, DuckDBEngine, ExactResult, PrivacyRules, compile_query, release

from .conftest import HEAVY_DRIVER, SCHEMA, Product, row_rules, unit_rules, write_product

EXACT_QUERIES = [
    "SELECT province, COUNT(*), SUM(freight_price), AVG(distance) FROM trips GROUP BY province",
    "SELECT month, COUNT(freight_price) AS priced FROM trips "
    "WHERE (month = 1 OR month = 2) AND tag <> 'a''b' GROUP BY month",
    "SELECT province, month, COUNT(*) FROM trips WHERE NOT (province = 'GD' AND month > 6) OR distance < 50 "
    "GROUP BY province, month",
    "SELECT region, COUNT(*), AVG(freight_price) FROM trips t JOIN provinces p ON t.province = p.code "
    "WHERE trip_date BETWEEN '2024-03-01' AND '2024-09-30' GROUP BY region",
    "SELECT tag, COUNT(*) FROM trips "
    "WHERE -distance * 2 + 600 > ABS(month - 7) * 40 AND LOWER(tag) LIKE '%a%' GROUP BY tag",
    "SELECT COUNT(*), SUM(distance) FROM trips WHERE tag = 'x\\' OR tag IN ('é\u200b', 'semi;colon')",
    "SELECT COUNT(*) FROM trips WHERE month > 99",
]


def _rows(rows: Any) -> list[tuple[Any, ...]]:
    def key(r: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple((v is None, str(v)) for v in r)

    return sorted((tuple(r) for r in rows), key=key)


def _same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, float) or isinstance(y, float):
                if x is None or y is None or not math.isclose(float(x), float(y), rel_tol=1e-9):
                    return False
            elif x != y:
                return False
    return True


@pytest.mark.parametrize("sql", EXACT_QUERIES)
def test_exact_mode_equals_plain_duckdb(
    engine: DuckDBEngine, plain: duckdb.DuckDBPyConnection, sql: str
) -> None:
    q = compile_query(sql, SCHEMA, row_rules(require_dp=False), epsilon=None)
    answer = release(q, engine.run(q))
    assert answer.noise == tuple((None,) * len(q.columns) for _ in answer.rows)
    assert _same(_rows(answer.rows), _rows(plain.execute(sql).fetchall()))


def test_count_distinct_units_equals_plain_duckdb(
    engine: DuckDBEngine, plain: duckdb.DuckDBPyConnection
) -> None:
    sql = "SELECT month, COUNT(DISTINCT driver_id), COUNT(*) FROM trips GROUP BY month"
    q = compile_query(sql, SCHEMA, unit_rules(require_dp=False))
    assert _same(_rows(release(q, engine.run(q)).rows), _rows(plain.execute(sql).fetchall()))


def test_row_level_dp_exact_values_are_the_clamped_aggregates(
    engine: DuckDBEngine, plain: duckdb.DuckDBPyConnection
) -> None:
    q = compile_query(
        "SELECT province, COUNT(*), SUM(freight_price), AVG(distance) FROM trips GROUP BY province",
        SCHEMA,
        row_rules(),
        epsilon=1.0,
    )
    exact = {r[0]: r[1:] for r in engine.run(q).rows}
    truth = plain.execute(
        "SELECT province, COUNT(*), SUM(CASE WHEN freight_price > 2000 THEN 2000 ELSE freight_price END), "
        "SUM(distance - 250), COUNT(distance) FROM trips GROUP BY province"
    ).fetchall()
    by = {m.name: i for i, m in enumerate(q.measures)}
    for province, count, price, centred, nn in truth:
        got = exact[province]
        assert got[by["rows"]] == count and got[by["nn:t0.distance"]] == nn
        fp_price = q.measures[by["sum:t0.freight_price"]].fixed_point
        fp_dist = q.measures[by["csum:t0.distance"]].fixed_point
        # Fixed point: each value is rounded to 1/fp, so the sum is within count/(2 fp).
        assert abs(got[by["sum:t0.freight_price"]] / fp_price - price) <= count / (2 * fp_price)
        assert abs(got[by["csum:t0.distance"]] / fp_dist - centred) <= count / (2 * fp_dist)
        assert float(got[by["sum:t0.freight_price"]]).is_integer()


def test_dropping_a_noop_clamp_changes_nothing(
    engine: DuckDBEngine, plain: duckdb.DuckDBPyConnection
) -> None:
    q = compile_query(
        "SELECT month, SUM(distance), SUM(freight_price) FROM trips GROUP BY month",
        SCHEMA,
        row_rules(),
        epsilon=1.0,
    )
    full = q.exact_sql("duckdb")
    assert full.count("CASE") == 2
    # The engine knows distance lies in [0, 500] (one MIN/MAX scan) and drops that CASE; price has outliers.
    assert q.exact_sql("duckdb", unclamped=[c for c in q.clamps if c[1] == "distance"]).count("CASE") == 1
    assert _rows(engine.run(q).rows) == _rows(plain.execute(full).fetchall())


def test_runs_are_deterministic(engine: DuckDBEngine) -> None:
    q = compile_query(
        "SELECT month, COUNT(*), AVG(freight_price) FROM trips GROUP BY month",
        SCHEMA,
        unit_rules(),
        epsilon=1.0,
    )
    assert _rows(engine.run(q).rows) == _rows(engine.run(q).rows)


# --- contribution bounding on neighbouring data sets ---------------------------------------------------

BOUNDED_QUERIES = [
    "SELECT month, COUNT(*), COUNT(DISTINCT driver_id), SUM(freight_price), AVG(distance) "
    "FROM trips GROUP BY month",
    "SELECT province, month, COUNT(*), SUM(distance) FROM trips GROUP BY province, month",
    "SELECT COUNT(*), SUM(freight_price), COUNT(freight_price) FROM trips",
    "SELECT band, COUNT(*), AVG(freight_price) FROM trips t JOIN drivers d ON t.driver_id = d.driver_id "
    "GROUP BY band",
    "SELECT region, COUNT(*) FROM trips t JOIN provinces p ON t.province = p.code GROUP BY region",
]


@pytest.fixture(scope="module")
def neighbours(
    tmp_path_factory: pytest.TempPathFactory, trip_rows: list[dict[str, Any]], product: Product
) -> Iterator[dict[str, tuple[DuckDBEngine, DuckDBEngine]]]:
    """Engines over the data and over the data without one unit (the heavy driver, an ordinary one) or row."""
    out: dict[str, tuple[DuckDBEngine, DuckDBEngine]] = {}
    base = DuckDBEngine(product.sources(), threads=1)
    variants = {
        "heavy": [r for r in trip_rows if r["driver_id"] != HEAVY_DRIVER],
        "ordinary": [r for r in trip_rows if r["driver_id"] != 7],
        "row": [r for r in trip_rows if r["trip_id"] != 97],  # the outlier-price trip
    }
    try:
        for name, rows in variants.items():
            smaller = write_product(Path(tmp_path_factory.mktemp(name)), rows)
            out[name] = (base, DuckDBEngine(smaller.sources(), threads=1))
        yield out
    finally:
        base.close()
        for _, other in out.values():
            other.close()


def _differences(q: CompiledQuery, a: ExactResult, b: ExactResult) -> list[dict[tuple[Any, ...], float]]:
    nk = len(q.plan.keys)
    zero = [0] * len(q.measures)
    da = {r[:nk]: r[nk:] for r in a.rows}
    db = {r[:nk]: r[nk:] for r in b.rows}
    diffs: list[dict[tuple[Any, ...], float]] = [{} for _ in q.measures]
    for key in set(da) | set(db):
        va, vb = da.get(key, zero), db.get(key, zero)
        for j, m in enumerate(q.measures):
            if m.kind == "dropped":
                continue
            d = abs(float(va[j] or 0) - float(vb[j] or 0))
            if d:
                diffs[j][key] = d
    for j, m in enumerate(q.measures):
        if m.kind == "dropped":  # one global number, repeated in every row: compared once
            total_a = max((float(r[nk + j] or 0) for r in a.rows), default=0.0)
            total_b = max((float(r[nk + j] or 0) for r in b.rows), default=0.0)
            if total_a != total_b:
                diffs[j][("<all groups>",)] = abs(total_a - total_b)
    return diffs


@pytest.mark.parametrize("sql", BOUNDED_QUERIES)
@pytest.mark.parametrize("who", ["heavy", "ordinary"])
def test_unit_contribution_is_bounded(
    neighbours: dict[str, tuple[DuckDBEngine, DuckDBEngine]], sql: str, who: str
) -> None:
    rules = unit_rules()
    q = compile_query(sql, SCHEMA, rules, epsilon=1.0)
    with_unit, without_unit = neighbours[who]
    diffs = _differences(q, with_unit.run(q), without_unit.run(q))
    changed_groups = set().union(*(d.keys() for d in diffs)) - {("<all groups>",)}
    assert len(changed_groups) <= q.groups_per_unit
    for m, d in zip(q.measures, diffs, strict=True):
        assert all(v <= m.per_group for v in d.values()), (m.name, d)
        assert sum(d.values()) <= m.l1
        assert math.sqrt(sum(v * v for v in d.values())) <= m.l2 + 1e-9
    if who == "heavy" and q.plan.keys and "rows" in [m.name for m in q.measures]:
        # The heavy driver really was cut down: without bounds it would change counts by hundreds.
        rows = diffs[[m.name for m in q.measures].index("rows")]
        assert sum(rows.values()) <= rules.max_rows_per_unit * rules.max_groups_per_unit
        # ... and the dropped-rows count saw it: the heavy driver loses hundreds, clipped at m·g
        dropped = diffs[[m.name for m in q.measures].index("dropped")]
        assert sum(dropped.values()) == rules.max_rows_per_unit * rules.max_groups_per_unit


@pytest.mark.parametrize("sql", [s for s in BOUNDED_QUERIES if "drivers" not in s])
def test_row_contribution_is_bounded(
    neighbours: dict[str, tuple[DuckDBEngine, DuckDBEngine]], sql: str
) -> None:
    q = compile_query(sql.replace("COUNT(DISTINCT driver_id), ", ""), SCHEMA, row_rules(), epsilon=1.0)
    with_row, without_row = neighbours["row"]
    diffs = _differences(q, with_row.run(q), without_row.run(q))
    assert len(set().union(*(d.keys() for d in diffs))) <= 1
    for m, d in zip(q.measures, diffs, strict=True):
        assert sum(d.values()) <= m.l1, (m.name, d)


def test_engine_accepts_csv_and_jsonl(tmp_path: Path, trip_rows: list[dict[str, Any]]) -> None:
    con = duckdb.connect()
    rows = [(r["province"], r["month"]) for r in trip_rows[:50]]
    con.execute("CREATE TABLE t (province VARCHAR, month INTEGER)")
    con.executemany("INSERT INTO t VALUES (?, ?)", rows)
    con.table("t").write_csv(str(tmp_path / "t.csv"))
    con.execute(f"COPY t TO '{tmp_path / 't.jsonl'}' (FORMAT json)")
    con.close()
    rules = PrivacyRules(min_group_size=1, require_dp=False)
    from datavalley.privacy import ProductSchema, TableSpec

    schema = ProductSchema.of(TableSpec("t", {"province": "text", "month": "integer"}))
    q = compile_query("SELECT COUNT(*) FROM t", schema, rules)
    for name in ("t.csv", "t.jsonl"):
        with DuckDBEngine({"t": tmp_path / name}, threads=1) as eng:
            assert eng.run(q).rows == ((50,),)
