"""Escape attempts fail twice: the allowlist refuses them, and the locked-down engine would too."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from sqlglot import exp

from datavalley.errors import DatavalleyError, InvalidInput, PolicyViolation
from datavalley.privacy import CompiledQuery, DuckDBEngine, ProductSchema, TableSpec, compile_query

from .conftest import SCHEMA, Product, row_rules, unit_rules

ESCAPES = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT COUNT(*) FROM read_csv('/etc/passwd')",
    "SELECT COUNT(*) FROM read_parquet('/tmp/other.parquet')",
    "SELECT COUNT(*) FROM read_text('/etc/passwd')",
    "SELECT COUNT(*) FROM glob('/*')",
    "SELECT COUNT(*) FROM trips WHERE getenv('HOME') = 'x'",
    "SELECT COUNT(*) FROM trips WHERE current_setting('threads') = '1'",
    "SELECT COUNT(*) FROM duckdb_settings()",
    "SELECT COUNT(*) FROM duckdb_tables()",
    "SELECT COUNT(*) FROM sqlite_scan('/tmp/x.db', 't')",
    "SELECT COUNT(*) FROM information_schema.tables",
    "SELECT COUNT(*) FROM pg_catalog.pg_class",
    "SELECT COUNT(*) FROM system.main.trips",
    "SELECT COUNT(*) FROM 'https://example.com/x.parquet'",
    "INSTALL httpfs",
    "LOAD httpfs",
    "ATTACH '/tmp/x.db' AS x",
    "COPY trips TO '/tmp/out.csv'",
    "COPY (SELECT COUNT(*) FROM trips) TO '/tmp/out.csv'",
    "EXPORT DATABASE '/tmp/db'",
    "PRAGMA database_list",
    "SET threads = 64",
    "SET enable_external_access = true",
    "RESET lock_configuration",
    "CREATE TABLE x AS SELECT 1",
    "CREATE MACRO m(a) AS a",
    "DROP VIEW trips",
    "INSERT INTO trips VALUES (1)",
    "UPDATE trips SET month = 1",
    "DELETE FROM trips",
    "CALL pragma_version()",
    "DESCRIBE trips",
    "SUMMARIZE trips",
    "SELECT COUNT(*) FROM trips UNION ALL SELECT COUNT(*) FROM read_csv('/etc/passwd')",
    "SELECT COUNT(*) FROM trips; SELECT * FROM read_csv('/etc/passwd')",
    "SELECT COUNT(*) FROM trips; ATTACH '/tmp/x.db'",
    "WITH trips AS (SELECT * FROM read_csv('/etc/passwd')) SELECT COUNT(*) FROM trips",
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT COUNT(*) FROM r",
    "SELECT COUNT(*) FROM trips WHERE tag IN (SELECT * FROM read_csv('/etc/passwd'))",
    "SELECT COUNT(*) FROM trips t JOIN read_csv('/etc/passwd') p ON t.tag = p.column0",
    "SELECT COUNT(*) FROM trips WHERE province = 'GD' OR EXISTS (SELECT 1 FROM glob('/*'))",
    "FROM read_csv('/etc/passwd')",
    "SELECT COUNT(*) FROM trips WHERE tag = $$x$$ OR getenv('HOME') IS NOT NULL",
    "SELECT COUNT(*) FROM trips WHERE tag = (SELECT content FROM read_text('/etc/passwd'))",
    'SELECT COUNT(*) FROM "trіps"',  # Cyrillic i
    'SELECT COUNT(*) FROM "trips\u200b"',  # zero-width space
    "SELECT COUNT(*) FROM ｔｒｉｐｓ",  # fullwidth letters
    'SELECT COUNT(*) FROM trips WHERE "\u212aey" = 1',  # Kelvin sign folds to "k" under str.lower
    "SELECT COUNT(*) FROM trips WHERE \"tag\u0000\" = 'x'",
    "SELECT COUNT(*) FROM trips USING SAMPLE 10",
    "SELECT COUNT(*) FROM trips WHERE tag = 'x' COLLATE nocase",
    "SELECT COUNT(*) FROM trips WHERE tag::VARCHAR = 'x'",
    "SELECT COUNT(*) FROM trips WHERE [tag][1] = 'x'",
    "SELECT COUNT(*) FROM trips WHERE {'a': tag}.a = 'x'",
    "SELECT COUNT(*) FROM trips WHERE (SELECT 1) = 1",
    "SELECT COUNT(*) FROM trips WHERE list_contains(['x'], tag)",
    "SELECT COUNT(*) FROM trips WHERE query('SELECT 1') IS NULL",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_allowlist_refuses_escape(sql: str) -> None:
    with pytest.raises((PolicyViolation, InvalidInput)):
        compile_query(sql, SCHEMA, row_rules(), epsilon=1.0)


def test_comments_and_trailing_semicolon_are_harmless() -> None:
    plain = compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(), epsilon=1.0)
    commented = compile_query(
        "SELECT COUNT(*) /* ; ATTACH '/x' */ FROM trips -- ; DROP VIEW trips\n;",
        SCHEMA,
        row_rules(),
        epsilon=1.0,
    )
    assert commented.digest == plain.digest
    assert "ATTACH" not in commented.exact_sql("duckdb") and "--" not in commented.exact_sql("duckdb")


def test_string_literals_reach_both_dialects_intact(engine: DuckDBEngine) -> None:
    """A backslash or quote in a literal cannot break out of it in either generated dialect."""
    q = compile_query(
        r"SELECT COUNT(*) AS n FROM trips WHERE tag = 'x\' OR 1=1 --'", SCHEMA, row_rules(), epsilon=1.0
    )
    exact = engine.run(q)
    # The literal is x\ (DuckDB has no backslash escapes); the rest was a comment after OR 1=1.
    assert sqlglot.parse_one(q.exact_sql("spark"), read="spark").find(exp.Literal).this == "x\\"  # type: ignore[union-attr]
    assert exact.rows[0][0] > 0


def _hostile(q: CompiledQuery, sql: str) -> CompiledQuery:
    """The compiled query with its exact SQL replaced: what the engine would face if the allowlist failed."""
    return dataclasses.replace(q, exact=sqlglot.parse_one(sql, read="duckdb"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_text('/etc/hostname')",
        "COPY (SELECT 1) TO '/tmp/dv-escape.csv'",
        "ATTACH '/tmp/dv-escape.db' AS x",
        "SET enable_external_access = true",
        "SET threads = 8",
        "LOAD httpfs",
        "INSTALL httpfs",
        "SELECT * FROM read_parquet('https://example.com/x.parquet')",
    ],
)
def test_engine_is_locked_down_even_without_the_allowlist(engine: DuckDBEngine, sql: str) -> None:
    q = compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(), epsilon=1.0)
    with pytest.raises(DatavalleyError):
        engine.run(_hostile(q, sql))
    assert not Path("/tmp/dv-escape.csv").exists() and not Path("/tmp/dv-escape.db").exists()


def test_engine_limits_are_in_force(engine: DuckDBEngine) -> None:
    q = compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(), epsilon=1.0)
    probe = _hostile(
        q,
        "SELECT current_setting('threads'), current_setting('memory_limit'), "
        "current_setting('enable_external_access'), current_setting('lock_configuration')",
    )
    threads, memory, external, locked = engine.run(probe).rows[0]
    assert threads == 1 and external is False and locked is True
    assert memory.replace(" ", "").upper().startswith(("256", "244"))


def test_engine_sees_only_the_product(engine: DuckDBEngine) -> None:
    q = compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(), epsilon=1.0)
    rows = engine.run(_hostile(q, "SELECT table_name FROM information_schema.tables ORDER BY 1")).rows
    # the product's views and their empty twins (the data-independent check runs on those)
    assert {r[0] for r in rows} == set(engine.views.values()) | set(engine.empty_views.values())


def test_engine_errors_do_not_quote_data(engine: DuckDBEngine) -> None:
    q = compile_query("SELECT COUNT(*) FROM trips", SCHEMA, row_rules(), epsilon=1.0)
    with pytest.raises(InvalidInput) as info:
        engine.run(_hostile(q, f"SELECT CAST(tag AS INTEGER) FROM {engine.views['trips']}"))
    assert "a'b" not in info.value.message and "plain" not in info.value.message


def test_result_size_is_capped(product: Product) -> None:
    with DuckDBEngine(product.sources(), threads=1, max_rows=5) as small:
        q = compile_query(
            "SELECT month, COUNT(*) FROM trips GROUP BY month", SCHEMA, row_rules(), epsilon=1.0
        )
        with pytest.raises(PolicyViolation, match="more than 5 groups"):
            small.run(q)


def test_public_key_domain_is_capped() -> None:
    rules = row_rules(public_keys={"trip_id": tuple(range(400)), "month": tuple(range(1, 400))})
    with pytest.raises(PolicyViolation, match="at most"):
        compile_query(
            "SELECT trip_id, month, COUNT(*) FROM trips GROUP BY trip_id, month", SCHEMA, rules, epsilon=1.0
        )


def test_long_running_join_hits_the_time_limit(tmp_path: Path) -> None:
    # One unit with 60k rows joined to itself on the unit: 3.6e9 joined rows, and a condition on both
    # sides so that DuckDB cannot aggregate each side before joining.
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
    with DuckDBEngine({"big": big}, threads=1, timeout_s=0.5) as eng:
        start = time.perf_counter()
        with pytest.raises(PolicyViolation, match="time limit"):
            eng.run(q)
        assert time.perf_counter() - start < 10


def test_non_unique_lookup_key_is_refused_for_row_units(engine: DuckDBEngine) -> None:
    q = compile_query(
        "SELECT label, COUNT(*) FROM trips t JOIN dupes d ON t.province = d.code GROUP BY label",
        SCHEMA,
        row_rules(),
        epsilon=1.0,
    )
    assert q.plan.unique_keys == (("dupes", ("code",)),)
    with pytest.raises(PolicyViolation, match="not unique"):
        engine.run(q)


def test_engine_refuses_tables_it_does_not_serve(product: Product) -> None:
    with DuckDBEngine({"trips": product.trips}, threads=1) as only_trips:
        q = compile_query(
            "SELECT region, COUNT(*) FROM trips t JOIN provinces p ON t.province = p.code GROUP BY region",
            SCHEMA,
            row_rules(),
            epsilon=1.0,
        )
        with pytest.raises(InvalidInput, match="provinces"):
            only_trips.run(q)
