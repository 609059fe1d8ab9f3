"""Synthetic but realistic data sets for the demo: valid check digits, real formats, fictional people.

Every identifier is generated (never copied from real records): resident ID numbers carry a valid GB 11643
check digit, unified social credit codes a valid GB 32100 check character, bank cards a valid Luhn digit.
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from stdnum.cn import ric, uscc

COUNTIES = ["520102", "520103", "520111", "520302", "520201", "520402"]  # Guiyang, Zunyi, Liupanshui, Anshun
CITIES = ["贵阳", "遵义", "六盘水", "安顺", "毕节", "铜仁"]
# Destination provinces of freight leaving Guizhou, weighted: most trips stay near, a few go far.
PROVINCES = ["贵州", "云南", "四川", "重庆", "湖南", "广西", "广东", "西藏"]
PROVINCE_WEIGHTS = [40, 14, 12, 12, 9, 8, 4.9, 0.1]
SURNAMES = "王李张刘陈杨黄赵吴周"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀"


def resident_id(rng: random.Random) -> str:
    birth = datetime(1960, 1, 1) + timedelta(days=rng.randint(0, 16000))
    base = f"{rng.choice(COUNTIES)}{birth:%Y%m%d}{rng.randint(0, 999):03d}"
    return base + ric.calc_check_digit(base + "0")  # stdnum ignores the last character


def mobile(rng: random.Random) -> str:
    return f"1{rng.choice('3589')}{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}"


def bank_card(rng: random.Random) -> str:
    digits = [6, 2, 2, 8, 4, 8] + [rng.randint(0, 9) for _ in range(12)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def credit_code(rng: random.Random) -> str:
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    base = "91" + rng.choice(["520100", "520300", "520200"]) + "".join(rng.choice(alphabet) for _ in range(9))
    return base + uscc.calc_check_digit(base)


def person_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))


def write_trips(path: Path, rows: int, seed: int = 1) -> Path:
    """Logistics trips: driver ID numbers and phones (personal), cities, distance, fare, time."""
    rng = random.Random(seed)
    drivers = [(resident_id(rng), mobile(rng), person_name(rng)) for _ in range(max(rows // 20, 10))]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "trip_id",
                "driver_id",
                "driver_phone",
                "driver_name",
                "origin_city",
                "dest_city",
                "dest_province",
                "distance_km",
                "fare_cny",
                "departed_at",
                "month",
            ]
        )
        for i in range(rows):
            d = rng.choice(drivers)
            at = start + timedelta(minutes=rng.randint(0, 300_000))
            w.writerow(
                [
                    f"T{i:07d}",
                    d[0],
                    d[1],
                    d[2],
                    rng.choice(CITIES),
                    rng.choice(CITIES),
                    rng.choices(PROVINCES, PROVINCE_WEIGHTS)[0],
                    rng.randint(3, 900),
                    rng.randint(15, 4000),
                    at.strftime("%Y-%m-%d %H:%M:%S"),
                    at.strftime("%Y-%m"),
                ]
            )
    return path


def write_loan_applicants(path: Path, rows: int, seed: int = 2) -> Path:
    """Bank loan applicants (Parquet): ID numbers, phones, bank cards, income, amount, decision."""
    rng = random.Random(seed)
    import csv
    import tempfile

    import duckdb

    columns = {
        "application_id": "VARCHAR",
        "applicant_id_no": "VARCHAR",
        "phone": "VARCHAR",
        "card_no": "VARCHAR",
        "monthly_income_cny": "BIGINT",
        "loan_amount_cny": "BIGINT",
        "approved": "BOOLEAN",
    }
    # Written through DuckDB (no pyarrow in the default install): CSV with declared types -> Parquet.
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "rows.csv"
        with staging.open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(columns)
            for i in range(rows):
                out.writerow(
                    [
                        f"L{i:07d}",
                        resident_id(rng),
                        mobile(rng),
                        bank_card(rng),
                        rng.randint(2_000, 60_000),
                        rng.randint(5, 500) * 1000,
                        "true" if rng.random() < 0.7 else "false",
                    ]
                )
        con = duckdb.connect()
        try:
            types = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
            con.execute(
                f"COPY (SELECT * FROM read_csv('{staging}', header=true, columns={types})) "
                f"TO '{path}' (FORMAT parquet)"
            )
        finally:
            con.close()
    return path


def write_enterprise_registry(path: Path, rows: int, seed: int = 3) -> Path:
    """The public enterprise registry (JSON lines): USCC, name, capital, industry, founding date."""
    import json

    rng = random.Random(seed)
    industries = ["物流", "制造", "零售", "软件", "农业", "金融服务"]
    with path.open("w", encoding="utf-8") as fh:
        for _ in range(rows):
            fh.write(
                json.dumps(
                    {
                        "uscc": credit_code(rng),
                        "enterprise_name": (
                            f"贵州{rng.choice(['黔', '筑', '遵', '安'])}{rng.randint(100, 999)}"
                            f"{rng.choice(industries)}有限公司"
                        ),
                        "registered_capital_wan": rng.randint(10, 50_000),
                        "industry": rng.choice(industries),
                        "founded": (
                            f"{rng.randint(1995, 2025)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                        ),
                        "city": rng.choice(CITIES),
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    return path
