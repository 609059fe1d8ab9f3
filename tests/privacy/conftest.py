"""Shared fixtures for the private SQL tests: a small trips product in Parquet, its schema and rules,
and engines over it (built once per session: the data never changes)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from datavalley.privacy import DuckDBEngine, PrivacyRules, ProductSchema, TableSpec

PROVINCES = ("GD", "ZJ", "JS", "SC")
RARE_PROVINCE = "XZ"  # one driver, two trips: must never survive DP thresholding
HEAVY_DRIVER = 999  # 400 trips: exercises the contribution bounds
TAGS = ("plain", "a'b", "x\\", "é\u200b", "semi;colon", "--dash")

SCHEMA = ProductSchema.of(
    TableSpec(
        "trips",
        {
            "trip_id": "integer",
            "province": "text",
            "month": "integer",
            "driver_id": "integer",
            "freight_price": "float",
            "distance": "float",
            "trip_date": "date",
            "tag": "text",
        },
    ),
    TableSpec("provinces", {"code": "text", "region": "text"}),
    TableSpec("drivers", {"driver_id": "integer", "band": "text"}),
    TableSpec("dupes", {"code": "text", "label": "text"}),
)

CLAMPS = {"freight_price": (0.0, 2000.0), "distance": (0.0, 500.0)}
JOIN_KEYS = (
    ("trips.province", "provinces.code"),
    ("trips.driver_id", "drivers.driver_id"),
    ("trips.province", "dupes.code"),
)


def row_rules(**changes: Any) -> PrivacyRules:
    """Row-level rules: every trip is its own unit; provinces and dupes are public lookup tables."""
    base: dict[str, Any] = {
        "privacy_unit": None,
        "min_group_size": 1,
        "clamps": CLAMPS,
        "join_keys": JOIN_KEYS,
        "public_tables": frozenset({"provinces", "dupes"}),
        "delta": 1e-6,
    }
    base.update(changes)
    return PrivacyRules(**base)


def unit_rules(**changes: Any) -> PrivacyRules:
    """Driver-level rules: a driver adds at most 3 rows to each of at most 2 groups."""
    base: dict[str, Any] = {
        "privacy_unit": "driver_id",
        "min_group_size": 1,
        "max_rows_per_unit": 3,
        "max_groups_per_unit": 2,
        "clamps": CLAMPS,
        "join_keys": JOIN_KEYS,
        "public_tables": frozenset({"provinces", "dupes"}),
        "delta": 1e-6,
    }
    base.update(changes)
    return PrivacyRules(**base)


def _trips(rnd: random.Random) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(driver: int, province: str) -> None:
        i = len(rows)
        price = round(rnd.lognormvariate(5.5, 0.6), 2)
        if i % 97 == 0:
            price = 1e7  # an outlier far above the clamp
        rows.append(
            {
                "trip_id": i,
                "province": province,
                "month": rnd.randint(1, 12),
                "driver_id": driver,
                "freight_price": None if i % 53 == 0 else price,
                "distance": round(rnd.uniform(1.0, 499.0), 1),
                "trip_date": date(2024, 1, 1) + timedelta(days=rnd.randrange(366)),
                "tag": TAGS[i % len(TAGS)],
            }
        )

    for driver in range(1, 301):
        home = PROVINCES[driver % len(PROVINCES)]
        for _ in range(rnd.randint(5, 15)):
            add(driver, home if rnd.random() < 0.8 else rnd.choice(PROVINCES))
    for _ in range(400):
        add(HEAVY_DRIVER, rnd.choice(PROVINCES))
    add(500, RARE_PROVINCE)
    add(500, RARE_PROVINCE)
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@dataclass(frozen=True)
class Product:
    """Paths of one copy of the product's files."""

    trips: Path
    provinces: Path
    drivers: Path
    dupes: Path

    def sources(self) -> dict[str, Path]:
        return {
            "trips": self.trips,
            "provinces": self.provinces,
            "drivers": self.drivers,
            "dupes": self.dupes,
        }


def write_product(directory: Path, trips: list[dict[str, Any]]) -> Product:
    directory.mkdir(parents=True, exist_ok=True)
    provinces = [{"code": p, "region": r} for p, r in zip((*PROVINCES, RARE_PROVINCE), "SEEWW", strict=True)]
    drivers = [{"driver_id": d, "band": "ABC"[d % 3]} for d in sorted({t["driver_id"] for t in trips})]
    dupes = [{"code": p, "label": x} for p in PROVINCES for x in ("one", "two")]
    return Product(
        trips=_write(directory / "trips.parquet", trips),
        provinces=_write(directory / "provinces.parquet", provinces),
        drivers=_write(directory / "drivers.parquet", drivers),
        dupes=_write(directory / "dupes.parquet", dupes),
    )


@pytest.fixture(scope="session")
def trip_rows() -> list[dict[str, Any]]:
    return _trips(random.Random(20240601))


@pytest.fixture(scope="session")
def product(tmp_path_factory: pytest.TempPathFactory, trip_rows: list[dict[str, Any]]) -> Product:
    return write_product(tmp_path_factory.mktemp("product"), trip_rows)


@pytest.fixture(scope="session")
def engine(product: Product) -> Iterator[DuckDBEngine]:
    with DuckDBEngine(product.sources(), threads=1, memory_limit="256MB", timeout_s=20.0) as eng:
        yield eng


@pytest.fixture(scope="session")
def plain(product: Product) -> Iterator[duckdb.DuckDBPyConnection]:
    """An ordinary DuckDB connection over the same files: the ground truth."""
    con = duckdb.connect(config={"threads": 1})
    for name, path in product.sources().items():
        con.read_parquet(str(path)).create_view(name)
    yield con
    con.close()


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


#: The unit that tells neighbouring data sets apart: extreme values in every column, so that any
#: expression that can fail at run time fails on its rows.
EXTREME_DRIVER = 4242


def extreme_rows(start: int) -> list[dict[str, Any]]:
    base = {
        "province": "ZZ",
        "driver_id": EXTREME_DRIVER,
        "tag": "x" * 300 + "%_\\'",
    }
    values = [
        (9_223_372_036_854_775_807, 1.7e308, -1.7e308, date(1, 1, 1)),
        (-9_223_372_036_854_775_807, -1.7e308, 5e-324, date(9999, 12, 31)),
        (2_147_483_648, float("nan"), float("inf"), date(2024, 2, 29)),
    ]
    return [
        {
            **base,
            "trip_id": start + i,
            "month": month,
            "freight_price": price,
            "distance": distance,
            "trip_date": day,
        }
        for i, (month, price, distance, day) in enumerate(values)
    ]


@pytest.fixture(scope="session")
def neighbour(tmp_path_factory: pytest.TempPathFactory, trip_rows: list[dict[str, Any]]) -> Product:
    """The product plus one more unit (EXTREME_DRIVER) with extreme values: a neighbouring data set."""
    return write_product(tmp_path_factory.mktemp("neighbour"), trip_rows + extreme_rows(len(trip_rows)))


@pytest.fixture(scope="session")
def neighbour_engine(neighbour: Product) -> Iterator[DuckDBEngine]:
    with DuckDBEngine(neighbour.sources(), threads=1, memory_limit="256MB", timeout_s=20.0) as eng:
        yield eng
