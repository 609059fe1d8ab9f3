from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import duckdb
import pytest

from datavalley.catalog import SourceError, SourceFormat, SourceKind, connect, fingerprint, open_source


def _csv(tmp_path: Path, name: str = "a.csv", text: str = "id,name\n1,x\n2,y\n") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.csv", "csv"), ("a.CSV", "csv"), ("a.csv.gz", "csv"), ("a.parquet", "parquet"), ("a.jsonl", "jsonl")],
)
def test_format_from_extension(tmp_path: Path, name: str, fmt: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    src = open_source(path)
    assert src.format is SourceFormat(fmt)
    assert src.kind is SourceKind.FILE
    assert src.location == str(path.resolve())


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = _csv(tmp_path, "data.txt-export")
    with pytest.raises(SourceError, match="cannot tell the format"):
        open_source(path)
    with connect(open_source(path, format="csv")) as conn:
        assert conn.schema.names == ("id", "name")


def test_unknown_explicit_format(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"unknown format 'xlsx'"):
        open_source(_csv(tmp_path), format="xlsx")


def test_missing_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceError) as info:
        open_source(missing)
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)
    assert info.value.location == str(missing)


def test_directory_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "dir.csv"
    folder.mkdir()
    with pytest.raises(SourceError, match="is a directory"):
        open_source(folder)


def test_zero_byte_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty \(0 bytes\)"):
        open_source(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = _csv(tmp_path)
    path.chmod(0)
    with pytest.raises(SourceError, match="not readable"):
        open_source(path)


def test_header_only_csv_has_no_rows(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="has no rows") as info:
        connect(open_source(_csv(tmp_path, text="id,name\n")))
    assert "a.csv" in str(info.value)


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not a parquet file at all")
    with pytest.raises(SourceError, match="cannot read as parquet") as info:
        connect(open_source(path))
    assert str(path) in str(info.value)


def test_empty_parquet_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    duckdb.connect().execute(f"COPY (SELECT 1 AS a WHERE false) TO '{path}' (FORMAT parquet)")
    with pytest.raises(SourceError, match="has no rows"):
        connect(open_source(path))


def test_invalid_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad\.jsonl"), connect(open_source(path)) as conn:
        fingerprint(conn)


def test_connection_cannot_read_other_files(tmp_path: Path) -> None:
    other = _csv(tmp_path, "other.csv", "secret\n42\n")
    with connect(open_source(_csv(tmp_path))) as conn:
        assert conn.execute(f"SELECT count(*) FROM {conn.view}") == [(2,)]
        with pytest.raises((SourceError, duckdb.Error), match=r"disabled|Permission"):
            conn.execute(f"SELECT * FROM read_csv('{other}')")
        with pytest.raises(duckdb.Error):
            conn.connection.execute("SET enable_external_access = true")
        with pytest.raises(duckdb.Error):
            conn.connection.execute("SET allowed_paths = ['/']")


def test_connection_is_closed_and_scratch_removed(tmp_path: Path) -> None:
    conn = connect(open_source(_csv(tmp_path)))
    scratch = Path(conn._scratch)
    assert scratch.is_dir()
    conn.close()
    assert not scratch.exists()
    with pytest.raises(duckdb.Error):
        conn.connection.execute("SELECT 1")


def _sqlite(tmp_path: Path) -> Path:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE orders (id INTEGER, customer TEXT, amount REAL, day DATE)")
        c.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            [(1, "王伟", 12.5, "2024-01-02"), (2, None, 7.0, "2024-02-03"), (3, "李娜", None, None)],
        )
    return db


def test_sqlite_table_matches_csv_fingerprint(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    src = open_source(f"sqlite:///{db}", table="orders")
    assert src.kind is SourceKind.DATABASE and src.format is SourceFormat.SQLITE
    with connect(src) as conn:
        assert conn.schema.names == ("id", "customer", "amount", "day")
        assert [c.type.value for c in conn.schema.columns] == ["integer", "text", "float", "date"]
        from_db = fingerprint(conn)
    csv = _csv(
        tmp_path,
        "orders.csv",
        "id,customer,amount,day\n1,王伟,12.5,2024-01-02\n2,,7.0,2024-02-03\n3,李娜,,\n",
    )
    with connect(open_source(csv)) as conn:
        assert fingerprint(conn).value == from_db.value
    assert from_db.row_count == 3


def test_sqlite_missing_table(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="table 'nope' does not exist"):
        connect(open_source(f"sqlite:///{_sqlite(tmp_path)}", table="nope"))


def test_sqlite_missing_file_and_table_required(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(f"sqlite:///{tmp_path / 'none.db'}", table="t")
    with pytest.raises(SourceError, match="needs table="):
        open_source(f"sqlite:///{_sqlite(tmp_path)}")


def test_sqlite_declared_type_mismatch_is_reported(tmp_path: Path) -> None:
    db = tmp_path / "loose.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (n INTEGER)")
        c.execute("INSERT INTO t VALUES ('not a number')")
    with pytest.raises(SourceError, match=r"column 'n' is declared INTEGER"):
        connect(open_source(f"sqlite:///{db}", table="t"))


def test_database_url_password_is_masked() -> None:
    src = open_source("postgresql://alice:s3cret@db.example/shop", table="public.orders")
    assert "s3cret" not in src.location
    assert "s3cret" not in repr(src)
    assert src.format is SourceFormat.POSTGRESQL
    assert src.url is not None and "postgresql+psycopg://" in src.url


def test_unsupported_database_and_table_on_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="unsupported database 'mysql'"):
        open_source("mysql://u@h/db", table="t")
    with pytest.raises(SourceError, match="only applies to database URLs"):
        open_source(_csv(tmp_path), table="t")
