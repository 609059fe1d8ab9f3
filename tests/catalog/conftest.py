"""Shared helpers for the catalog tests: value generators and writers for the three file formats."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from stdnum import luhn
from stdnum.cn import ric, uscc

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# Region codes that python-stdnum's birth-place table knows for all the birth years generated below.
REGIONS = ("110101", "310101", "440301", "330106", "510104")
MOBILE_PREFIXES = ("138", "139", "150", "186", "188", "177", "199", "135")


def make_ric(rnd: random.Random, *, born: date | None = None, valid: bool = True) -> str:
    """A Chinese resident ID number; ``valid=False`` gives a wrong check digit."""
    if born is None:
        born = date(1950, 1, 1) + timedelta(days=rnd.randrange(20000))
    body = rnd.choice(REGIONS) + born.strftime("%Y%m%d") + f"{rnd.randrange(1000):03d}"
    check = ric.calc_check_digit(body + "0")
    if not valid:
        check = rnd.choice([c for c in "0123456789X" if c != check])
    return body + check


def make_mobile(rnd: random.Random) -> str:
    return rnd.choice(MOBILE_PREFIXES) + f"{rnd.randrange(10**8):08d}"


def make_card(rnd: random.Random, *, length: int = 16, valid: bool = True) -> str:
    body = "62" + "".join(rnd.choice("0123456789") for _ in range(length - 3))
    check = luhn.calc_check_digit(body)
    if not valid:
        check = str((int(check) + 1 + rnd.randrange(9)) % 10)
    return body + check


def make_uscc(rnd: random.Random, *, valid: bool = True) -> str:
    body = "91" + rnd.choice(REGIONS) + "".join(rnd.choice(USCC_ALPHABET) for _ in range(9))
    check = uscc.calc_check_digit(body)
    if not valid:
        check = rnd.choice([c for c in USCC_ALPHABET if c != check])
    return body + check


Writer = Callable[[duckdb.DuckDBPyConnection, str, Path], Path]


def write_table(con: duckdb.DuckDBPyConnection, table: str, path: Path, fmt: str) -> Path:
    """Write DuckDB table ``table`` to ``path`` in ``fmt`` (csv, parquet or jsonl)."""
    options = {"csv": "(FORMAT csv, HEADER)", "parquet": "(FORMAT parquet)", "jsonl": "(FORMAT json)"}[fmt]
    con.execute(f"COPY {table} TO '{path}' {options}")
    return path


@pytest.fixture()
def rnd() -> random.Random:
    return random.Random(20240601)
