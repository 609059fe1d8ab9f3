"""Sources open only what they name, fail with the file and the reason, and sandbox DuckDB."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from datavalley.catalog import (
    SourceConnection,
    SourceError,
    SourceFormat,
    SourceKind,
    connect,
    fingerprint,
    open_source,
)


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
    with pytest.raises(SourceError, match=r"unknown format 'xls'"):
        open_source(_csv(tmp_path), format="xls")


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


# Capabilities that let root read any file; without them root is held to the permission bits.
_DAC_CAPS = "-dac_override,-dac_read_search"
_OPEN_IN_CHILD = """
import sys
from datavalley.catalog import SourceError, open_source
try:
    open_source(sys.argv[1])
except SourceError as exc:
    print(exc)
"""


def test_unreadable_file(tmp_path: Path) -> None:
    path = _csv(tmp_path)
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(SourceError, match="not readable"):
            open_source(path)
        return
    # Root reads everything through CAP_DAC_OVERRIDE, so check in a child that has dropped it
    # (util-linux setpriv, part of every Debian/Ubuntu base image). No skip: CI runs as root.
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is needed to test unreadable files as root"
    drop = [setpriv, f"--inh-caps={_DAC_CAPS}", f"--bounding-set={_DAC_CAPS}"]
    child = subprocess.run(
        [*drop, sys.executable, "-c", _OPEN_IN_CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert child.stdout.strip() == f"{path}: file is not readable (permission denied)", child.stderr


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


# SQL that would touch something other than the source: read, list, write, attach, load, fetch.
ESCAPES = {
    "read_csv": "SELECT * FROM read_csv('{other}')",
    "read_text": "SELECT * FROM read_text('{other}')",
    "read_blob": "SELECT * FROM read_blob('{other}')",
    "read_parquet": "SELECT * FROM read_parquet('{other}')",
    "dotdot": "SELECT * FROM read_csv('{folder}/../{folder_name}/other.csv')",
    "glob": "SELECT * FROM glob('{folder}/*')",
    "copy_to": "COPY (SELECT 42) TO '{folder}/written.csv'",
    "attach": "ATTACH '{folder}/new.duckdb'",
    "export": "EXPORT DATABASE '{folder}/export'",
    "http": "SELECT * FROM read_csv('https://example.invalid/x.csv')",
    "load": "LOAD httpfs",
    "install": "INSTALL httpfs",
}
UNLOCKS = [
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "SET allowed_paths = ['/']",
    "SET allowed_directories = ['/']",
    "SET lock_configuration = false",
]


@pytest.fixture()
def sandboxed(tmp_path: Path) -> Iterator[tuple[Path, Path, SourceConnection]]:
    # The other file is world-readable and this process can read it: only the sandbox stands in the way,
    # which holds whatever user the tests run as (root included).
    other = _csv(tmp_path, "other.csv", "secret\n42\n")
    other.chmod(0o644)
    assert other.read_text(encoding="utf-8").startswith("secret")
    with connect(open_source(_csv(tmp_path))) as conn:
        yield tmp_path, other, conn


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_connection_cannot_reach_other_files(
    name: str, sandboxed: tuple[Path, Path, SourceConnection]
) -> None:
    folder, other, conn = sandboxed
    before = sorted(p.name for p in folder.iterdir())
    sql = ESCAPES[name].format(other=other, folder=folder, folder_name=folder.name)
    with pytest.raises(SourceError, match=r"cannot read: Permission Error: .*disabled"):
        conn.execute(sql)
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing was written
    # The source itself stays readable through its view (and only through the path it was opened with).
    assert conn.execute(f"SELECT count(*) FROM {conn.view}") == [(2,)]


@pytest.mark.parametrize("sql", UNLOCKS)
def test_sandbox_cannot_be_unlocked(sql: str, sandboxed: tuple[Path, Path, SourceConnection]) -> None:
    _, other, conn = sandboxed
    with pytest.raises(duckdb.Error, match="configuration has been locked"):
        conn.connection.execute(sql)
    settings = conn.execute(
        "SELECT current_setting('enable_external_access'), current_setting('lock_configuration')"
    )
    assert settings == [(False, True)]
    with pytest.raises(SourceError, match="Permission"):
        conn.execute(f"SELECT * FROM read_csv('{other}')")


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
