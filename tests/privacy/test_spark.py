"""SparkEngine runs the same compiled queries as DuckDBEngine and gets the same exact values."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from datavalley.errors import PolicyViolation
from datavalley.privacy import (
    DuckDBEngine,
    PrivacyRules,
    ProductSchema,
    SparkEngine,
    TableSpec,
    compile_query,
    release,
)

from .conftest import SCHEMA, Product, row_rules, unit_rules


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    # Started once for the module: a local JVM takes ~10 s to come up.
    session = (
        SparkSession.builder.master("local[2]")
        .appName("datavalley-privacy-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def spark_engine(spark: SparkSession, product: Product) -> Iterator[SparkEngine]:
    eng = SparkEngine(product.sources(), spark=spark, timeout_s=120.0)
    yield eng
    eng.close()


CASES: list[tuple[str, PrivacyRules]] = [
    (
        "SELECT province, COUNT(*), SUM(freight_price), AVG(distance) FROM trips GROUP BY province",
        row_rules(),
    ),
    (
        "SELECT month, COUNT(*), COUNT(DISTINCT driver_id), SUM(freight_price), AVG(distance) FROM trips "
        "GROUP BY month",
        unit_rules(),
    ),
    (
        "SELECT province, month, COUNT(*), AVG(freight_price) FROM trips "
        "WHERE (month <= 6 OR tag = 'x\\') AND NOT tag IN ('a''b', 'é\u200b') GROUP BY province, month",
        unit_rules(max_groups_per_unit=3, max_rows_per_unit=2),
    ),
    (
        "SELECT band, COUNT(*), SUM(distance) FROM trips t JOIN drivers d ON t.driver_id = d.driver_id "
        "WHERE trip_date >= '2024-04-01' GROUP BY band",
        unit_rules(),
    ),
    (
        "SELECT region, COUNT(*), AVG(distance) FROM trips t JOIN provinces p ON t.province = p.code "
        "WHERE -distance * 2 + 600 > ABS(month - 7) * 40 GROUP BY region",
        row_rules(),
    ),
    (
        "SELECT province, COUNT(*), SUM(distance) FROM trips GROUP BY province",
        unit_rules(public_keys={"province": ("GD", "ZJ", "JS", "SC", "XX")}, max_groups_per_unit=2),
    ),
    ("SELECT COUNT(*), SUM(freight_price) FROM trips WHERE month > 99", unit_rules()),
]


def _sorted(rows: Any) -> list[tuple[Any, ...]]:
    return sorted((tuple(r) for r in rows), key=lambda r: tuple((v is None, str(v)) for v in r))


@pytest.mark.parametrize(("sql", "rules"), CASES)
def test_exact_values_are_identical(
    engine: DuckDBEngine, spark_engine: SparkEngine, sql: str, rules: PrivacyRules
) -> None:
    q = compile_query(sql, SCHEMA, rules, epsilon=1.0)
    duck, spark = engine.run(q), spark_engine.run(q)
    assert duck.columns == spark.columns and duck.engine != spark.engine
    # DP exact values are integers (counts, fixed-point sums): equal, not merely close.
    assert _sorted(duck.rows) == _sorted(spark.rows)
    assert release(q, spark).columns == q.columns


def test_exact_mode_answers_agree(engine: DuckDBEngine, spark_engine: SparkEngine) -> None:
    sql = (
        "SELECT province, COUNT(DISTINCT driver_id) AS u, SUM(freight_price) AS s, AVG(distance) AS a "
        "FROM trips GROUP BY province HAVING u > 1 ORDER BY s DESC"
    )
    q = compile_query(sql, SCHEMA, unit_rules(require_dp=False, min_group_size=2))
    duck, spark = release(q, engine.run(q)), release(q, spark_engine.run(q))
    assert duck.suppressed_groups == spark.suppressed_groups == 1
    assert [r[:2] for r in duck.rows] == [r[:2] for r in spark.rows]
    for a, b in zip(duck.rows, spark.rows, strict=True):
        assert all(math.isclose(float(x), float(y), rel_tol=1e-9) for x, y in zip(a[2:], b[2:], strict=True))


def test_spark_refuses_non_unique_lookup_keys(spark_engine: SparkEngine) -> None:
    q = compile_query(
        "SELECT label, COUNT(*) FROM trips t JOIN dupes d ON t.province = d.code GROUP BY label",
        SCHEMA,
        row_rules(),
        epsilon=1.0,
    )
    with pytest.raises(PolicyViolation, match="not unique"):
        spark_engine.run(q)


def test_spark_time_limit_cancels_every_job(spark: SparkSession, tmp_path: Path) -> None:
    n = 60_000
    big = tmp_path / "big.parquet"
    pq.write_table(pa.table({"driver_id": [1] * n, "v": list(range(n))}), big)
    schema = ProductSchema.of(TableSpec("big", {"driver_id": "integer", "v": "integer"}))
    rules = unit_rules(join_keys=(("big.driver_id", "big.driver_id"),), public_tables=frozenset(), clamps={})
    q = compile_query(
        "SELECT COUNT(*) FROM big a JOIN big b ON a.driver_id = b.driver_id WHERE a.v + b.v > 5",
        schema,
        rules,
        epsilon=1.0,
    )
    eng = SparkEngine({"big": big}, spark=spark, timeout_s=0.5)
    try:
        start = time.perf_counter()
        with pytest.raises(PolicyViolation, match="time limit"):
            eng.run(q)
        assert time.perf_counter() - start < 15
        # The session is still usable afterwards.
        eng.timeout_s = 60.0
        ok = compile_query("SELECT COUNT(*) FROM big", schema, rules, epsilon=1.0)
        # the bounded count, and the rows the bounds dropped (59,997, counted up to m·g for the one unit)
        bound = rules.max_rows_per_unit * rules.max_groups_per_unit
        assert eng.run(ok).rows == ((rules.max_rows_per_unit, bound),)
    finally:
        eng.close()


# --- side channels: Spark follows the same rule as DuckDB ---------------------------------------------

SPARK_ATTACKS = [
    "SELECT COUNT(*) AS n FROM trips WHERE province = 'ZZ' AND month + 9223372036854775807 > 0 "
    "AND ABS(-month) * month > 9223372036854775807 AND COALESCE(month, 1.5) > 0",
    "SELECT COUNT(*) AS n FROM trips WHERE province = 'ZZ' "
    "AND freight_price = 1.2345678901234567890123456789",
    "SELECT COUNT(*) AS n FROM trips WHERE province = 'ZZ' "
    "AND trip_date BETWEEN '0001-01-01' AND '2024-02-29'",
    "SELECT province, SUM(freight_price) AS s, AVG(distance) AS a FROM trips "
    "WHERE freight_price * 1e308 > 1e308 GROUP BY province",
    "SELECT trip_date, COUNT(*) AS n FROM trips WHERE province = 'ZZ' GROUP BY trip_date "
    "HAVING trip_date > '2024-01-01'",
]


def test_spark_outcomes_are_identical_on_neighbouring_data(
    spark: SparkSession, product: Product, neighbour: Product
) -> None:
    def outcome(engine: SparkEngine, sql: str) -> tuple[Any, ...]:
        q = compile_query(sql, SCHEMA, unit_rules(), epsilon=1.0)
        engine.check(q)  # the empty-relation run: data-independent
        try:
            exact = engine.run(q)
        except Exception as exc:  # any failure on the data breaks the rule
            return ("failed", type(exc).__name__)
        release(q, exact)
        return ("ok", q.digest)

    base = SparkEngine(product.sources(), spark=spark, timeout_s=120.0)
    plus = SparkEngine(neighbour.sources(), spark=spark, timeout_s=120.0)
    try:
        for sql in SPARK_ATTACKS:
            a, b = outcome(base, sql), outcome(plus, sql)
            assert a == b and a[0] == "ok", (sql, a, b)
    finally:
        base.close()
        plus.close()
