"""Registration benchmark: fingerprint + profile + PI detection vs a plain DuckDB full scan.

Generates a realistic ride-hailing trips Parquet file (customer and driver ID numbers with valid check
digits, CN mobiles, names, cities, amounts, timestamps, plates, pick-up coordinates) with vectorised
DuckDB SQL, then times (a) ``datavalley.catalog.analyze`` and (b) a plain DuckDB scan that reads every
column once, and prints both, the ratio, and finally ONE JSON line with the figures.

    python bench/registration.py            # 10,000,000 rows
    python bench/registration.py --quick    # 1,000,000 rows, well under a minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from datavalley.catalog import Analysis, analyze, open_source

_RIC_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_REGIONS = ("110101", "310104", "440305", "510107", "330106", "420102", "320106", "370202", "610113")
_SURNAMES = "王李张刘陈杨黄赵周吴徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
_CITIES = ("北京", "上海", "深圳", "成都", "杭州", "武汉", "南京", "青岛", "西安", "广州")
_PROVINCES = "京沪粤川浙鄂苏鲁陕"
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on mainland plates
_MOBILE_PREFIXES = ("138", "139", "150", "158", "186", "188", "135", "177", "199", "166")


def _list(values: object) -> str:
    items = values if isinstance(values, (list, tuple)) else list(str(values))
    return "[" + ", ".join("'" + str(v) + "'" for v in items) + "]"


def _pick(values: object, expr: str) -> str:
    items = values if isinstance(values, (list, tuple)) else list(str(values))
    return f"{_list(values)}[1 + (({expr}) % {len(items)})::INTEGER]"


def _people(kind: str, count: int, seed: int) -> str:
    """SQL producing ``count`` people with ID numbers that carry valid check digits."""
    body = (
        f"{_pick(_REGIONS, f'hash(p * {seed} + 1)')}"
        f" || strftime(DATE '1950-01-01' + ((hash(p * {seed} + 2) % 24000)::INTEGER), '%Y%m%d')"
        f" || lpad((hash(p * {seed} + 3) % 1000)::VARCHAR, 3, '0')"
    )
    weighted = " + ".join(f"{w} * (ord(b[{k + 1}]) - 48)" for k, w in enumerate(_RIC_WEIGHTS))
    return f"""
        SELECT p, b || substr('10X98765432', (({weighted}) % 11)::INTEGER + 1, 1) AS id_no,
               mobile, name, plate
        FROM (
          SELECT p, {body} AS b,
            {_pick(_MOBILE_PREFIXES, f"hash(p * {seed} + 4)")}
              || lpad((hash(p * {seed} + 5) % 100000000)::VARCHAR, 8, '0') AS mobile,
            {_pick(_SURNAMES, f"hash(p * {seed} + 6)")} || {_pick(_GIVEN, f"hash(p * {seed} + 7)")}
              || CASE WHEN hash(p * {seed} + 8) % 2 = 0 THEN {_pick(_GIVEN, f"hash(p * {seed} + 9)")}
                 ELSE '' END AS name,
            {_pick(_PROVINCES, f"hash(p * {seed} + 10)")} || {_pick(_PLATE_LETTERS, f"hash(p * {seed} + 11)")}
              || CASE WHEN hash(p * {seed} + 12) % 5 = 0
                 THEN 'D' || lpad((hash(p * {seed} + 13) % 100000)::VARCHAR, 5, '0')
                 ELSE {_pick(_PLATE_LETTERS, f"hash(p * {seed} + 14)")}
                      || lpad((hash(p * {seed} + 15) % 10000)::VARCHAR, 4, '0') END AS plate
          FROM range({count}) AS t(p)
        ) AS {kind}
    """


def generate(path: Path, rows: int) -> None:
    """Write ``rows`` synthetic trips to ``path`` (Parquet) using vectorised DuckDB SQL."""
    customers = max(rows // 10, 1)  # a customer takes ten trips on average
    drivers = max(rows // 200, 1)
    con = duckdb.connect()
    con.execute(f"CREATE TEMP TABLE customers AS {_people('customers', customers, 7)}")
    con.execute(f"CREATE TEMP TABLE drivers AS {_people('drivers', drivers, 13)}")
    con.execute(
        f"""
        COPY (
          SELECT t.i AS trip_id,
                 c.id_no AS customer_id_no, c.mobile AS customer_mobile, c.name AS customer_name,
                 d.id_no AS driver_id_no, d.name AS driver_name, d.plate AS plate,
                 {_pick(_CITIES, "hash(t.i * 31)")} AS city,
                 ((hash(t.i * 37) % 2000000) / 100)::DECIMAL(10, 2) AS amount,
                 TIMESTAMP '2024-01-01' + to_seconds((hash(t.i * 41) % 31536000)::BIGINT) AS created_at,
                 round(22.5 + (hash(t.i * 43) % 1000000) / 1e6, 6) AS pickup_lat,
                 round(113.9 + (hash(t.i * 47) % 1000000) / 1e6, 6) AS pickup_lon
          FROM (SELECT i, hash(i * 3) % {customers} AS cp, hash(i * 5) % {drivers} AS dp
                FROM range({rows}) AS r(i)) AS t
          JOIN customers AS c ON c.p = t.cp
          JOIN drivers AS d ON d.p = t.dp
          ORDER BY t.i
        ) TO '{path}' (FORMAT parquet)
        """
    )
    con.close()


def baseline_sql(path: Path) -> str:
    """A plain full scan that reads every column once with the cheapest aggregate that forces it.

    ``min``/``max``/``count`` would be answered from Parquet statistics without reading the data, so
    strings contribute ``max(strlen(...))`` and numbers/timestamps a ``sum``/``max`` over an expression.
    """
    con = duckdb.connect()
    cols = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()
    con.close()
    parts = ["count(*)"]
    for name, typ, *_ in cols:
        q = '"' + name.replace('"', '""') + '"'
        if typ == "VARCHAR":
            parts.append(f"max(strlen({q}))")
        elif typ.startswith("TIMESTAMP") or typ == "DATE":
            parts.append(f"max(epoch({q}))")
        else:
            parts.append(f"sum({q})")
    return f"SELECT {', '.join(parts)} FROM read_parquet('{path}')"


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true", help="1,000,000 rows")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each side; the best counts")
    parser.add_argument("--keep", type=Path, help="write the Parquet file here and keep it")
    args = parser.parse_args(argv)
    rows = 1_000_000 if args.quick else args.rows

    workdir = tempfile.mkdtemp(prefix="dv-bench-")
    path = args.keep or Path(workdir) / "trips.parquet"
    start = time.perf_counter()
    if not path.exists():
        generate(path, rows)
    gen_s = time.perf_counter() - start
    size = path.stat().st_size
    print(f"data: {rows:,} rows, {size / 1e6:.1f} MB, generated in {gen_s:.1f} s", file=sys.stderr)

    sql = baseline_sql(path)
    con = duckdb.connect()
    con.execute(sql).fetchall()  # warm the OS page cache for both sides
    scan_s = _best(lambda: con.execute(sql).fetchall(), args.repeat)
    con.close()

    source = open_source(path)
    result: dict[str, Analysis] = {}

    def run() -> None:
        result["analysis"] = analyze(source)

    analyze_s = _best(run, args.repeat)
    analysis = result["analysis"]
    ratio = analyze_s / scan_s
    print(f"plain DuckDB full scan: {scan_s:.3f} s", file=sys.stderr)
    print(f"analyze():              {analyze_s:.3f} s", file=sys.stderr)
    print(f"ratio:                  {ratio:.2f}x (target <= 2.00x)", file=sys.stderr)
    pii = analysis.pii
    print(
        json.dumps(
            {
                "rows": rows,
                "file_mb": round(size / 1e6, 1),
                "threads": duckdb.connect().execute("SELECT current_setting('threads')").fetchall()[0][0],
                "cpus": os.cpu_count(),
                "scan_s": round(scan_s, 3),
                "analyze_s": round(analyze_s, 3),
                "ratio": round(ratio, 2),
                "fingerprint": analysis.fingerprint,
                "pii_columns": {c.column: [k.value for k in c.kinds] for c in pii.columns},
                "estimated_individuals": pii.estimated_individuals,
                "grade": analysis.suggestion.grade.value,
            },
            ensure_ascii=False,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
