"""Benchmark: what closing the private SQL side channels costs (docs/PRIVATE_SQL.md, section 7).

On one synthetic trips file (10M rows; ``--quick`` 1M) it times, interleaved and repeated:

- **native**: plain DuckDB on a numeric WHERE with the columns' own types (the baseline the channel
  fixes changed: integer and decimal comparisons, integer arithmetic);
- **typed**: the same filter as datavalley now runs it (numeric columns as DOUBLE, DOUBLE constants);
- **check**: ``engine.check(q)``, the data-independent run on empty relations the node does before
  charging, against **run**: ``engine.run(q)`` on the data.

Ends with ONE JSON line: best-of-N seconds per leg, ``typed_over_native`` and ``check_over_run``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from datavalley.privacy import DuckDBEngine, PrivacyRules, ProductSchema, TableSpec, compile_query

WHERE = "month + 3 > 6 AND driver_id * 2 < 9000000 AND price BETWEEN 10.5 AND 4000.25"


def generate(path: Path, rows: int) -> None:
    con = duckdb.connect()
    con.sql(
        f"""
        SELECT (i % 31)::VARCHAR AS province, (1 + i % 12)::INTEGER AS month,
               (hash(i) % {max(rows // 200, 10)})::BIGINT AS driver_id,
               ((hash(i * 3) % 500000) / 100.0)::DECIMAL(12, 2) AS price
        FROM range({rows}) t(i)
        """
    ).write_parquet(str(path))
    con.close()


def best(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M rows, 3 repeats (< 1 min)")
    parser.add_argument("--rows", type=int, default=None)
    args = parser.parse_args()
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    repeats = 3 if args.quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trips.parquet"
        generate(path, rows)
        schema = ProductSchema.of(
            TableSpec(
                "trips", {"province": "text", "month": "integer", "driver_id": "integer", "price": "decimal"}
            )
        )
        rules = PrivacyRules(privacy_unit=None, min_group_size=1, public_keys={"month": tuple(range(1, 13))})
        q = compile_query(
            f"SELECT month, COUNT(*) AS n FROM trips WHERE {WHERE} GROUP BY month", schema, rules, epsilon=1.0
        )
        native_sql = f"SELECT month, COUNT(*) FROM read_parquet('{path}') WHERE {WHERE} GROUP BY month"
        typed_where = q.plan.where.sql("duckdb") if q.plan.where is not None else "TRUE"
        typed_sql = (
            f"SELECT month, COUNT(*) FROM read_parquet('{path}') AS t0 WHERE {typed_where} GROUP BY month"
        )
        plain = duckdb.connect(config={"threads": 2})
        legs = {"native": 0.0, "typed": 0.0, "check": 0.0, "run": 0.0}
        with DuckDBEngine({"trips": path}, threads=2) as engine:
            assert plain.sql(native_sql).fetchall() and plain.sql(typed_sql).fetchall()
            for _ in range(2):  # interleaved rounds; keep each leg's best
                for name, fn in (
                    ("native", lambda: plain.sql(native_sql).fetchall()),
                    ("typed", lambda: plain.sql(typed_sql).fetchall()),
                    ("check", lambda: engine.check(q)),
                    ("run", lambda: engine.run(q)),
                ):
                    t = best(fn, repeats)
                    legs[name] = t if legs[name] == 0.0 else min(legs[name], t)
        plain.close()
    print(
        json.dumps(
            {
                "bench": "private_sql_checks",
                "rows": rows,
                "python": platform.python_version(),
                **{f"{k}_s": round(v, 5) for k, v in legs.items()},
                "typed_over_native": round(legs["typed"] / legs["native"], 3),
                "check_over_run": round(legs["check"] / legs["run"], 4),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
