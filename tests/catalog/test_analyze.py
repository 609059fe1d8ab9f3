"""One analysis call gives the same fingerprint and PI figures as the separate scans, for files and tables."""

from __future__ import annotations

import random
import sqlite3
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datavalley.catalog import (
    Grade,
    PIIKind,
    SourceError,
    analyze,
    connect,
    fingerprint,
    open_source,
    scan_pii,
)

from .conftest import make_mobile, make_ric

TODAY = date(2025, 6, 1)


def _rows(n: int) -> dict[str, list[object]]:
    rnd = random.Random(n)
    return {
        "order_id": list(range(n)),
        "buyer_id_no": [make_ric(rnd) for _ in range(n)],
        "buyer_phone": [make_mobile(rnd) for _ in range(n)],
        "city": [rnd.choice(["杭州", "宁波", None]) for _ in range(n)],
        "amount": [rnd.randrange(100, 10_000) / 100 for _ in range(n)],
    }


def test_single_scan_equals_separate_scans(tmp_path: Path) -> None:
    path = tmp_path / "orders.parquet"
    pq.write_table(pa.table(_rows(3_000)), path)
    stages: list[str] = []
    result = analyze(path, sector="retail", reference_date=TODAY, progress=stages.append)
    assert stages == ["opening", "sampling", "scanning", "cross-checking", "classifying", "done"]
    with connect(open_source(path)) as conn:
        separate_fp = fingerprint(conn)
        separate_pii = scan_pii(conn, reference_date=TODAY)
    assert (result.fingerprint, result.row_count, result.schema) == (
        separate_fp.value,
        separate_fp.row_count,
        separate_fp.schema,
    )
    # Exact figures agree; distinct-count estimates are HyperLogLog over different inputs (cell hashes in
    # the shared scan, raw values alone), so they may differ by the estimator's error.
    exact = [
        (c.column, c.kinds, c.matches, c.valid, c.detections, c.cross_checks) for c in result.pii.columns
    ]
    assert exact == [
        (c.column, c.kinds, c.matches, c.valid, c.detections, c.cross_checks) for c in separate_pii.columns
    ]
    assert abs(result.pii.estimated_individuals - separate_pii.estimated_individuals) <= 0.1 * 3_000
    assert result.pii.column("buyer_id_no") is not None and result.pii.column("city") is None
    assert result.suggestion.grade is Grade.GENERAL  # 3,000 people are far below every default threshold


def test_database_table_gives_the_file_fingerprint(tmp_path: Path) -> None:
    cols = _rows(500)
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        columns = "order_id INTEGER, buyer_id_no TEXT, buyer_phone TEXT, city TEXT, amount REAL"
        c.execute(f"CREATE TABLE orders ({columns})")
        c.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)", list(zip(*cols.values(), strict=True)))
    path = tmp_path / "orders.parquet"
    pq.write_table(pa.table(cols), path)
    from_db = analyze(open_source(f"sqlite:///{db}", table="orders"), reference_date=TODAY)
    from_file = analyze(path, reference_date=TODAY)
    assert from_db.fingerprint == from_file.fingerprint
    assert from_db.pii.kinds == from_file.pii.kinds >= {PIIKind.CN_RIC, PIIKind.CN_MOBILE}
    assert from_db.source.location.startswith("sqlite:///")


def test_errors_name_the_source(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"empty\.csv: has no rows"):
        analyze(path)
