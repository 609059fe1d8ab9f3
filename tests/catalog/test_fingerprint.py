from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datavalley.catalog import connect, fingerprint, open_source, reference_fingerprint
from datavalley.catalog.fingerprint import NULL_HASH, cell_hash, check_duckdb_hash, reference_row_hash

from .conftest import write_table

# One table with every canonicalisation rule in play; CANONICAL spells out the expected texts by hand,
# independently of the SQL that produces them.
TABLE_SQL = """
CREATE TABLE t AS SELECT * FROM (VALUES
  (1, '010010', '110101199003074514', 12.50::DECIMAL(10,2), DATE '2024-01-02',
   TIMESTAMP '2024-01-02 10:00:00.5', true, 0.1::DOUBLE, NULL::VARCHAR, 100.0::DOUBLE, '中文'),
  (2, '020020', '11010119900307451X', 3.00::DECIMAL(10,2), DATE '2024-02-03',
   TIMESTAMP '2024-01-02 10:00:00', false, 1e16::DOUBLE, '', 7::DOUBLE, 'a,"b"'),
  (-3, '', NULL, -0.25::DECIMAL(10,2), NULL, NULL, NULL, -2.5e-05::DOUBLE, 'x', NULL, 'line
break')
) AS v(id, pc, ric, amt, d, ts, b, f, e, g, note)
"""
NAMES = ["id", "pc", "ric", "amt", "d", "ts", "b", "f", "e", "g", "note"]
CANONICAL: list[list[str | None]] = [
    ["1", "010010", "110101199003074514", "12.5", "2024-01-02", "2024-01-02 10:00:00.5", "true", "0.1", None,
     "100", "中文"],
    ["2", "020020", "11010119900307451X", "3", "2024-02-03", "2024-01-02 10:00:00", "false", "1e+16", "", "7",
     'a,"b"'],
    ["-3", "", None, "-0.25", None, None, None, "-2.5e-05", "x", None, "line\nbreak"],
]  # fmt: skip


@pytest.fixture()
def table(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(TABLE_SQL)
    return con


def _fp(path: Path) -> str:
    with connect(open_source(path)) as conn:
        return fingerprint(conn).value


def test_matches_pure_python_reference(table: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_table(table, "t", tmp_path / "t.parquet", "parquet")
    with connect(open_source(path)) as conn:
        fp = fingerprint(conn)
    assert fp.value == reference_fingerprint(NAMES, CANONICAL)
    assert fp.row_count == 3
    assert fp.schema.names == tuple(NAMES)
    assert re.fullmatch(r"dvfp1:[0-9a-f]{64}", fp.value)


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_same_rows_reencoded_give_same_fingerprint(
    table: duckdb.DuckDBPyConnection, tmp_path: Path, fmt: str
) -> None:
    parquet = write_table(table, "t", tmp_path / "t.parquet", "parquet")
    other = write_table(table, "t", tmp_path / f"t.{fmt}", fmt)
    assert _fp(other) == _fp(parquet)


def test_pyarrow_physical_types_do_not_matter(tmp_path: Path) -> None:
    # int32 vs int64, float32 vs double, dictionary-encoded strings, ms timestamps: same values.
    narrow = pa.table(
        {
            "n": pa.array([1, 2, None], pa.int32()),
            "x": pa.array([0.1, 2.0, 3.5], pa.float32()),
            "s": pa.array(["a", "b", "a"]).dictionary_encode(),
            "ts": pa.array([1_700_000_000_000, None, 0], pa.timestamp("ms")),
        }
    )
    wide = pa.table(
        {
            "n": pa.array([1, 2, None], pa.int64()),
            "x": pa.array([0.1, 2.0, 3.5], pa.float64()),
            "s": pa.array(["a", "b", "a"]),
            "ts": pa.array([1_700_000_000_000_000, None, 0], pa.timestamp("us")),
        }
    )
    pq.write_table(narrow, tmp_path / "narrow.parquet")
    pq.write_table(wide, tmp_path / "wide.parquet")
    assert _fp(tmp_path / "narrow.parquet") == _fp(tmp_path / "wide.parquet")


def _variant(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.csv"
    path.write_text(body, encoding="utf-8")
    return _fp(path)


BASE = "a,b,c\n1,x,2024-01-01\n2,y,2024-01-02\n3,z,2024-01-03\n"


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("changed_cell", "a,b,c\n1,x,2024-01-01\n2,Y,2024-01-02\n3,z,2024-01-03\n"),
        ("extra_row", BASE + "4,w,2024-01-04\n"),
        ("removed_row", "a,b,c\n1,x,2024-01-01\n3,z,2024-01-03\n"),
        ("duplicated_row", BASE + "3,z,2024-01-03\n"),
        ("swapped_values", "a,b,c\n1,x,2024-01-01\n2,z,2024-01-02\n3,y,2024-01-03\n"),
        ("renamed_column", BASE.replace("a,b,c", "a,bb,c")),
        ("null_for_value", "a,b,c\n1,x,2024-01-01\n2,,2024-01-02\n3,z,2024-01-03\n"),
    ],
)
def test_any_change_changes_fingerprint(tmp_path: Path, name: str, body: str) -> None:
    assert _variant(tmp_path, name, body) != _variant(tmp_path, "base", BASE)


def test_duplicate_pair_is_not_cancelled(tmp_path: Path) -> None:
    # A XOR-combined multiset hash would be blind to adding the same row twice.
    twice = BASE + "9,q,2024-01-09\n9,q,2024-01-09\n"
    assert _variant(tmp_path, "twice", twice) != _variant(tmp_path, "base", BASE)


def test_row_order_and_column_order_do_not_matter(tmp_path: Path) -> None:
    # Documented decision: a table is a multiset of rows over a set of named columns.
    shuffled_rows = "a,b,c\n3,z,2024-01-03\n1,x,2024-01-01\n2,y,2024-01-02\n"
    reordered_cols = "c,a,b\n2024-01-01,1,x\n2024-01-02,2,y\n2024-01-03,3,z\n"
    base = _variant(tmp_path, "base", BASE)
    assert _variant(tmp_path, "rows", shuffled_rows) == base
    assert _variant(tmp_path, "cols", reordered_cols) == base


def test_swapping_two_columns_values_changes_it(tmp_path: Path) -> None:
    # Same multiset of cells per row, but the values moved between columns.
    body = "a,b\n1,2\n3,4\n"
    swapped = "a,b\n2,1\n4,3\n"
    assert _variant(tmp_path, "x", body) != _variant(tmp_path, "y", swapped)


def test_empty_string_and_null_differ() -> None:
    assert cell_hash("") != cell_hash(None) == NULL_HASH
    assert reference_fingerprint(["a"], [[""]]) != reference_fingerprint(["a"], [[None]])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), min_size=1, max_size=6))
def test_cell_and_row_hash_equal_duckdb(values: list[str | None]) -> None:
    con = duckdb.connect()
    cells = ", ".join(f"hash(${i + 1}::VARCHAR)" for i in range(len(values)))
    single, row = con.execute(f"SELECT hash($1::VARCHAR), hash({cells})", values).fetchall()[0]
    assert single == cell_hash(values[0])
    assert row == reference_row_hash(values)


def test_duckdb_hash_self_check_passes() -> None:
    check_duckdb_hash(duckdb.connect())
