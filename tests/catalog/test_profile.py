"""The quality profile's figures equal what plain Python computes over the same rows, and never leak PI."""

from __future__ import annotations

import json
import random
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datavalley.catalog import CanonicalType, analyze, connect, open_source, profile, scan_pii
from datavalley.catalog.profile import ResourceProfile

from .conftest import make_mobile, make_ric

TODAY = date(2025, 6, 1)
N = 1_000
DUPLICATES = 10  # the last DUPLICATES rows repeat the first ones exactly


def _columns(seed: int) -> dict[str, list[Any]]:
    rnd = random.Random(seed)
    t0 = datetime(2024, 1, 1)
    base = N - DUPLICATES
    cols: dict[str, list[Any]] = {
        "order_id": list(range(base)),
        "amount": [None if i % 7 == 0 else Decimal(rnd.randrange(1, 10**6)) / 100 for i in range(base)],
        "ratio": [rnd.random() * 2 - 1 for _ in range(base)],
        "city": [rnd.choice(["北京", "上海", "乌鲁木齐", "Shenzhen", "成都"]) for _ in range(base)],
        "note": [None if i % 3 else "备注" * (1 + i % 5) for i in range(base)],
        # 3% of the cells are not dates; 2024-02-30 has a date's shape but is no date.
        "visit_day": [
            "unknown"
            if i % 50 == 0
            else "2024-02-30"
            if i % 50 == 1
            else (date(2024, 1, 1) + timedelta(days=rnd.randrange(366))).isoformat()
            for i in range(base)
        ],
        "qty_text": [str(rnd.randrange(-50, 500)) if i % 40 else "n/a" for i in range(base)],
        "created_at": [t0 + timedelta(minutes=rnd.randrange(10**6)) for _ in range(base)],
        "updated_at": [t0 + timedelta(minutes=rnd.randrange(10**5)) for _ in range(base)],
        "birth_date": [date(1960, 1, 1) + timedelta(days=rnd.randrange(15_000)) for _ in range(base)],
        "phone": [make_mobile(rnd) for _ in range(base)],
        "id_no": [make_ric(rnd) for _ in range(base)],
    }
    for values in cols.values():
        values.extend(values[:DUPLICATES])
    return cols


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[Any]]]:
    cols = _columns(11)
    table = pa.table(
        {
            **cols,
            "amount": pa.array(cols["amount"], pa.decimal128(12, 2)),
            "created_at": pa.array(cols["created_at"], pa.timestamp("us")),
            "updated_at": pa.array(cols["updated_at"], pa.timestamp("us")),
        }
    )
    path = tmp_path_factory.mktemp("profile") / "orders.parquet"
    pq.write_table(table, path)
    return path, cols


@pytest.fixture(scope="module")
def prof(data: tuple[Path, dict[str, list[Any]]]) -> ResourceProfile:
    with connect(open_source(data[0])) as conn:
        return profile(conn, scan_pii(conn, reference_date=TODAY, sample_rows=0))


def test_rows_duplicates_and_completeness(
    prof: ResourceProfile, data: tuple[Path, dict[str, list[Any]]]
) -> None:
    _, cols = data
    rows = list(zip(*cols.values(), strict=True))
    assert prof.row_count == len(rows) == N
    assert prof.duplicate_rows == len(rows) - len(set(rows))
    by = {c.name: c for c in prof.columns}
    assert [c.name for c in prof.columns] == list(cols)
    for name, values in cols.items():
        non_null = sum(v is not None for v in values)
        assert by[name].non_null == non_null, name
        assert by[name].completeness == pytest.approx(non_null / N), name
        assert not by[name].distinct_exact


def test_distinct_estimates_are_close(prof: ResourceProfile, data: tuple[Path, dict[str, list[Any]]]) -> None:
    _, cols = data
    by = {c.name: c for c in prof.columns}
    for name, values in cols.items():
        exact = len({v for v in values if v is not None})
        # HyperLogLog (see the profile module): mean error ~2%, worst seen 8%; capped by the non-null cells.
        assert abs(by[name].distinct - exact) <= max(1, 0.1 * exact), (name, by[name].distinct, exact)
        assert by[name].distinct <= by[name].non_null


def test_min_max_and_lengths(prof: ResourceProfile, data: tuple[Path, dict[str, list[Any]]]) -> None:
    _, cols = data
    by = {c.name: c for c in prof.columns}
    amounts = [v for v in cols["amount"] if v is not None]
    assert (by["amount"].minimum, by["amount"].maximum) == (
        format(min(amounts).normalize(), "f"),
        format(max(amounts).normalize(), "f"),
    )
    assert (by["order_id"].minimum, by["order_id"].maximum) == ("0", str(N - DUPLICATES - 1))
    assert float(by["ratio"].minimum or "nan") == min(cols["ratio"])
    assert by["created_at"].maximum == max(cols["created_at"]).isoformat(sep=" ")
    # Text columns carry character lengths (not bytes, not values).
    for name in ("city", "note", "visit_day"):
        lengths = [len(v) for v in cols[name] if v is not None]
        assert (by[name].min_length, by[name].max_length) == (min(lengths), max(lengths)), name
        assert by[name].minimum is None and by[name].maximum is None, name
    assert by["order_id"].min_length is None and by["amount"].type is CanonicalType.DECIMAL


def test_validity_of_detected_text_types(
    prof: ResourceProfile, data: tuple[Path, dict[str, list[Any]]]
) -> None:
    _, cols = data
    by = {c.name: c for c in prof.columns}

    def is_date(text: str) -> bool:
        try:
            date.fromisoformat(text)
        except ValueError:
            return False
        return True

    day = by["visit_day"]
    assert day.detected_type == "date"
    assert day.valid == sum(is_date(v) for v in cols["visit_day"]) < N
    assert day.validity == pytest.approx(day.valid / day.non_null)
    qty = by["qty_text"]
    assert qty.detected_type == "integer"
    assert qty.valid == sum(v.lstrip("-").isdigit() for v in cols["qty_text"])
    assert by["city"].detected_type is None and by["city"].valid == by["city"].non_null


def test_pi_columns_take_validity_from_the_pi_scan(prof: ResourceProfile) -> None:
    by = {c.name: c for c in prof.columns}
    assert (by["phone"].detected_type, by["phone"].validity) == ("cn_mobile", 1.0)
    assert (by["id_no"].detected_type, by["id_no"].validity) == ("cn_ric", 1.0)


def test_personal_columns_carry_no_values(
    prof: ResourceProfile, data: tuple[Path, dict[str, list[Any]]]
) -> None:
    _, cols = data
    by = {c.name: c for c in prof.columns}
    assert {c.name for c in prof.columns if c.personal} == {"phone", "id_no", "birth_date"}
    birth = by["birth_date"]
    assert birth.type is CanonicalType.DATE and birth.minimum is None and birth.maximum is None
    text = json.dumps(prof.to_dict(), ensure_ascii=False)
    for name in ("phone", "id_no"):
        assert not any(v in text for v in cols[name]), name
    assert not any(v.isoformat() in text for v in cols["birth_date"])


def test_freshness_prefers_update_columns(
    prof: ResourceProfile, data: tuple[Path, dict[str, list[Any]]]
) -> None:
    _, cols = data
    # created_at holds later times, but a column named like an update time says more about freshness.
    assert max(cols["created_at"]) > max(cols["updated_at"])
    assert prof.freshness_column == "updated_at"
    assert prof.freshness == max(cols["updated_at"]).isoformat(sep=" ")


def test_profile_without_pi_report_shows_extremes(data: tuple[Path, dict[str, list[Any]]]) -> None:
    path, cols = data
    with connect(open_source(path)) as conn:
        plain = profile(conn, [])
    birth = next(c for c in plain.columns if c.name == "birth_date")
    assert birth.minimum == min(cols["birth_date"]).isoformat() and not birth.personal


def test_single_scan_analysis_gives_the_same_profile(
    prof: ResourceProfile, data: tuple[Path, dict[str, list[Any]]]
) -> None:
    # analyze() shares one scan between fingerprint, PI and profile; the figures must not change.
    assert analyze(data[0], reference_date=TODAY).profile == prof


def test_profile_of_csv_equals_profile_of_parquet(
    prof: ResourceProfile, data: tuple[Path, dict[str, list[Any]]], tmp_path: Path
) -> None:
    # Same rows, another encoding: counts, validity, duplicates and PI withholding agree.
    csv = tmp_path / "orders.csv"
    duckdb.connect().execute(f"COPY (FROM read_parquet('{data[0]}')) TO '{csv}' (FORMAT csv, HEADER)")
    with connect(open_source(csv)) as conn:
        other = profile(conn, scan_pii(conn, reference_date=TODAY, sample_rows=0))
    assert other.row_count == prof.row_count and other.duplicate_rows == prof.duplicate_rows
    for a, b in zip(other.columns, prof.columns, strict=True):
        assert (a.name, a.non_null, a.valid, a.personal) == (b.name, b.non_null, b.valid, b.personal)
