"""Source resolution benchmark: what a verified snapshot, GB18030 decoding and per-ID PSI pre-aggregation
cost, each against its baseline in the same run.

Usage::

    .venv/bin/python bench/sources.py            # 2M trip rows
    .venv/bin/python bench/sources.py --quick    # 200k rows, well under a minute

Figures (wall seconds, best of ``--runs``):

* ``scan_s`` — baseline: one DuckDB ``count(*)/sum`` scan of the UTF-8 CSV;
* ``snapshot_s`` — ``SourceResolver.snapshot`` on a cold node: read through the catalog reader, write the
  Parquet snapshot, fingerprint it; ``snapshot_cached_s`` — the same call when the file is unchanged;
* ``sqlite_snapshot_s`` — the same rows as an SQLite table (SQLAlchemy → Arrow → Parquet → fingerprint);
* ``gb18030_open_s`` vs ``utf8_open_s`` — ``open_source`` (encoding detection by full decode + dialect
  sniffing) on the GB18030 and UTF-8 versions of the file;
* ``psi_rows_s`` (baseline: the old one-record-per-row ``CsvDataset``) vs ``psi_aggregated_s``
  (``AggregatedDataset``: per normalised ID, SUM + COUNT) — iterating all records.

Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from datavalley import demo_data
from datavalley.catalog.sources import open_source
from datavalley.node.analysis import analyse_source, location_of
from datavalley.node.registry import NodeRegistry
from datavalley.node.sources import AggregatedDataset, SourceResolver, psi_aggregates
from datavalley.psi.datasets import CsvDataset
from datavalley.psi.normalise import IdKind


def best(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return round(min(times), 3), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    rows = args.rows or (200_000 if args.quick else 2_000_000)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dv-bench-sources-") as tmp:
        root = Path(tmp)
        trips = demo_data.write_trips(root / "trips.csv", rows)
        gb = root / "trips_gb.csv"
        gb.write_bytes(trips.read_text("utf-8").encode("gb18030"))
        db = root / "trips.db"
        with trips.open(encoding="utf-8") as fh, sqlite3.connect(db) as c:
            reader = csv.reader(fh)
            header = next(reader)
            types = {"distance_km": "REAL", "fare_cny": "REAL"}
            declared = ", ".join(f"{n} {types.get(n, 'TEXT')}" for n in header)
            c.execute(f"CREATE TABLE trips ({declared})")
            c.executemany(f"INSERT INTO trips VALUES ({', '.join('?' * len(header))})", reader)

        scan_s, _ = best(
            lambda: duckdb.sql(f"SELECT count(*), sum(fare_cny) FROM read_csv('{trips}')").fetchall(),
            args.runs,
        )
        utf8_open_s, _ = best(lambda: open_source(trips), args.runs)
        gb_open_s, src = best(lambda: open_source(gb), args.runs)

        home = root / "home"
        csv_a = analyse_source(str(trips))
        NodeRegistry(home).record("r_csv", location_of(csv_a.source, csv_a.fingerprint))
        db_a = analyse_source(f"sqlite:///{db}", table="trips")
        NodeRegistry(home).record("r_db", location_of(db_a.source, db_a.fingerprint))

        def cold(rid: str, fp: str) -> Any:
            return SourceResolver(home).snapshot(rid, fp)

        snapshot_s, snap = best(lambda: cold("r_csv", csv_a.fingerprint), args.runs)
        warm = SourceResolver(home)
        warm.snapshot("r_csv", csv_a.fingerprint)
        cached_s, _ = best(lambda: warm.snapshot("r_csv", csv_a.fingerprint), max(args.runs, 3))
        sqlite_s, _ = best(lambda: cold("r_db", db_a.fingerprint), args.runs)

        raw = CsvDataset(trips, "driver_phone", IdKind.PHONE)
        psi_rows_s, n_rows = best(lambda: sum(1 for _ in raw.records(("fare_cny",))), args.runs)
        aggs = psi_aggregates(
            {
                "columns": {"trips": [0, 1000], "km": [0, 10**7]},
                "aggregates": {
                    "trips": {"function": "count"},
                    "km": {"function": "sum", "column": "distance_km"},
                },
            }
        )
        agg = AggregatedDataset(snap, "driver_phone", IdKind.PHONE, aggs)
        psi_agg_s, n_ids = best(lambda: sum(1 for _ in agg.records(("trips", "km"))), args.runs)

        out = {
            "bench": "sources",
            "quick": args.quick,
            "machine": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "cpu_count": __import__("os").cpu_count(),
            },
            "rows": rows,
            "csv_mb": round(trips.stat().st_size / 2**20, 1),
            "scan_s": scan_s,
            "snapshot_s": snapshot_s,
            "snapshot_over_scan": round(snapshot_s / scan_s, 1) if scan_s else None,
            "snapshot_cached_s": cached_s,
            "sqlite_snapshot_s": sqlite_s,
            "utf8_open_s": utf8_open_s,
            "gb18030_open_s": gb_open_s,
            "gb18030_encoding": src.option("encoding"),
            "psi_rows_s": psi_rows_s,
            "psi_rows": n_rows,
            "psi_aggregated_s": psi_agg_s,
            "psi_ids": n_ids,
            "wall_s": round(time.perf_counter() - started, 1),
        }
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
