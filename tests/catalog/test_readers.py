"""Readers of every source family: JSON arrays and lines, nested flattening, CSV encodings and dialects,
Parquet, Excel, SQLite and PostgreSQL tables and views — each with a malformed-input case."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import duckdb
import openpyxl
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from datavalley.catalog import SourceError, connect, fingerprint, open_source
from datavalley.catalog.sources import SourceFormat, detect_encoding

ROWS = [
    {"id": 1, "name": "张三", "city": "北京"},
    {"id": 2, "name": "李四", "city": "上海"},
    {"id": 3, "name": "王五", "city": "广州"},
]


def _fp(location: Path | str, **kw: object) -> str:
    with connect(open_source(location, **kw)) as conn:  # type: ignore[arg-type]
        return fingerprint(conn).value


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "ref.csv"
    path.write_text("id,name,city\n" + "".join(f"{r['id']},{r['name']},{r['city']}\n" for r in ROWS), "utf-8")
    return path


# --- JSON -------------------------------------------------------------------------------------------


def test_json_array_is_rows_not_one_cell(tmp_path: Path) -> None:
    path = tmp_path / "people.json"
    path.write_text(json.dumps(ROWS, ensure_ascii=False, indent=2), "utf-8")
    src = open_source(path)
    assert src.format is SourceFormat.JSON
    with connect(src) as conn:
        assert conn.schema.names == ("id", "name", "city")
        assert conn.execute("SELECT count(*) FROM source") == [(3,)]
        assert fingerprint(conn).value == _fp(_csv(tmp_path))


def test_json_file_with_lines_and_jsonl_agree(tmp_path: Path) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS)
    (tmp_path / "a.json").write_text(lines, "utf-8")
    (tmp_path / "a.jsonl").write_text(lines, "utf-8")
    assert _fp(tmp_path / "a.json") == _fp(tmp_path / "a.jsonl") == _fp(_csv(tmp_path))


def test_nested_objects_are_flattened_and_scalar_lists_kept(tmp_path: Path) -> None:
    rows = [
        {
            "id": 1,
            "owner": {"name": "张三", "addr": {"city": "北京"}},
            "tags": ["a", "b"],
            "trips": [{"km": 3}],
        },
        {"id": 2, "owner": {"name": "李四"}, "tags": [], "trips": []},
    ]
    path = tmp_path / "nested.json"
    path.write_text(json.dumps(rows, ensure_ascii=False), "utf-8")
    with connect(open_source(path)) as conn:
        assert conn.schema.names == ("id", "owner.name", "owner.addr.city", "tags", "trips")
        got = conn.execute('SELECT "owner.name", "owner.addr.city", tags, trips FROM source ORDER BY id')
        assert got == [("张三", "北京", ["a", "b"], '[{"km":3}]'), ("李四", None, [], "[]")]
    # a Parquet file with the same struct flattens to the same columns and fingerprint
    pq = tmp_path / "nested.parquet"
    duckdb.sql(f"COPY (SELECT * FROM read_json('{path}')) TO '{pq}' (FORMAT parquet)")
    assert _fp(pq) == _fp(path)


def test_flattening_collision_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "clash.json"
    path.write_text('[{"a": {"b": 1}, "a.b": 2}]', "utf-8")
    with pytest.raises(SourceError, match=r"two columns named 'a\.b'"):
        connect(open_source(path))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('[{"a": 1}, {"a": ', "Malformed JSON"),
        ("[1, 2, 3]", "must be objects"),
        ('{"a": 1}\n{"a": \n', "Malformed JSON"),
    ],
)
def test_malformed_json_is_a_clear_error(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, "utf-8")
    with pytest.raises(SourceError, match=rf"bad\.json: cannot read as json: .*{reason}"):
        connect(open_source(path))


# --- CSV --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gb18030", "gbk", "utf-8-sig", "utf-16"])
def test_csv_encodings_are_detected_and_never_mangle_chinese(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / f"{encoding}.csv"
    path.write_bytes(_csv(tmp_path).read_text("utf-8").encode(encoding))
    src = open_source(path)
    assert src.option("encoding") == ("gb18030" if encoding == "gbk" else encoding)
    with connect(src) as conn:
        assert conn.execute("SELECT name, city FROM source ORDER BY id")[0] == ("张三", "北京")
        assert fingerprint(conn).value == _fp(_csv(tmp_path))


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.text(alphabet="张三李四王五北京上海广州中文数据交易所测试abc123 ", min_size=1, max_size=12),
        min_size=1,
    )
)
def test_gb18030_round_trip_property(tmp_path_factory: pytest.TempPathFactory, names: list[str]) -> None:
    """Any Chinese text written as GB18030 reads back exactly as it was written."""
    tmp = tmp_path_factory.mktemp("gb")
    text = "n,name\n" + "".join(f'{i},"{n}"\n' for i, n in enumerate(names))
    (tmp / "g.csv").write_bytes(text.encode("gb18030"))
    with connect(open_source(tmp / "g.csv")) as conn:
        assert [r[0] for r in conn.execute("SELECT CAST(name AS VARCHAR) FROM source ORDER BY n")] == names


def test_undecodable_csv_is_refused_with_a_hint(tmp_path: Path) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"id,name\n1,\x80\xff\xfe\x00\x81\n")
    assert detect_encoding(path) is None
    with pytest.raises(SourceError, match=r"binary\.csv: cannot detect the text encoding.*pass encoding="):
        open_source(path)
    with pytest.raises(SourceError, match="not valid utf-8 text"):
        open_source(path, options={"encoding": "utf-8"})
    with pytest.raises(SourceError, match="unknown encoding"):
        open_source(path, options={"encoding": "klingon"})


def test_explicit_latin1_encoding(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_bytes("id,name\n1,Zoë\n".encode("latin-1"))
    with connect(open_source(path, options={"encoding": "latin-1"})) as conn:
        assert conn.execute("SELECT name FROM source") == [("Zoë",)]


@pytest.mark.parametrize(("delimiter", "quote"), [(";", '"'), ("\t", '"'), ("|", "'"), (",", '"')])
def test_csv_dialect_is_detected_and_pinned(tmp_path: Path, delimiter: str, quote: str) -> None:
    path = tmp_path / "d.csv"
    body = "".join(
        f"{r['id']}{delimiter}{quote}{r['name']}{delimiter}x{quote}{delimiter}{r['city']}\n" for r in ROWS
    )
    path.write_text(f"id{delimiter}name{delimiter}city\n{body}", "utf-8")
    src = open_source(path)
    assert (src.option("delimiter"), src.option("quote")) == (delimiter, quote)
    with connect(src) as conn:
        assert conn.execute("SELECT name FROM source ORDER BY id")[0] == (f"张三{delimiter}x",)


def test_malformed_csv_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text('id,name\n1,"unterminated\n2,x\n', "utf-8")
    with pytest.raises(SourceError, match=r"ragged\.csv: cannot read"), connect(open_source(path)) as conn:
        conn.execute("SELECT * FROM source")
    with pytest.raises(SourceError, match="delimiter must be one character"):
        open_source(path, options={"delimiter": ";;"})
    with pytest.raises(SourceError, match=r"options \['sheet'\] do not apply to csv"):
        open_source(path, options={"sheet": "x"})


# --- Parquet ----------------------------------------------------------------------------------------


def test_parquet_agrees_with_csv_and_corrupt_parquet_is_refused(tmp_path: Path) -> None:
    pq = tmp_path / "p.parquet"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{_csv(tmp_path)}')) TO '{pq}' (FORMAT parquet)")
    assert _fp(pq) == _fp(_csv(tmp_path))
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(SourceError, match=r"bad\.parquet: cannot read as parquet"):
        connect(open_source(bad))


# --- Excel ------------------------------------------------------------------------------------------


def _xlsx(path: Path, rows: list[list[object]], sheet: str = "数据") -> Path:
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.title = sheet
    for row in rows:
        ws.append(row)
    book.save(path)
    return path


def test_xlsx_matches_csv(tmp_path: Path) -> None:
    path = _xlsx(
        tmp_path / "a.xlsx", [["id", "name", "city"]] + [[r["id"], r["name"], r["city"]] for r in ROWS]
    )
    src = open_source(path)
    assert src.format is SourceFormat.XLSX
    with connect(src) as conn:
        assert [c.type.value for c in conn.schema.columns] == ["integer", "text", "text"]
        assert fingerprint(conn).value == _fp(_csv(tmp_path))
    with connect(open_source(path, options={"sheet": "数据"})) as conn:
        assert conn.execute("SELECT count(*) FROM source") == [(3,)]


def test_xlsx_mixed_column_becomes_text(tmp_path: Path) -> None:
    path = _xlsx(tmp_path / "m.xlsx", [["code"], [1], ["A-2"], [3.5]])
    with connect(open_source(path)) as conn:
        assert conn.execute("SELECT code FROM source") == [("1",), ("A-2",), ("3.5",)]


@pytest.mark.parametrize(
    ("rows", "reason"),
    [
        ([["id", "id"], [1, 2]], r"header names \['id'\] occur more than once"),
        ([["id", None, "x"], [1, 2, 3]], r"header cell\(s\) in column\(s\) \[2\] are empty"),
        ([["id"]], "has no rows"),
    ],
)
def test_malformed_xlsx_is_a_clear_error(tmp_path: Path, rows: list[list[object]], reason: str) -> None:
    path = _xlsx(tmp_path / "bad.xlsx", rows)
    with pytest.raises(SourceError, match=reason):
        connect(open_source(path))


def test_corrupt_xlsx_and_missing_sheet(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.xlsx"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SourceError, match=r"corrupt\.xlsx: cannot read as xlsx"):
        connect(open_source(bad))
    good = _xlsx(tmp_path / "g.xlsx", [["id"], [1]])
    with pytest.raises(SourceError, match="no sheet 'nope'"):
        connect(open_source(good, options={"sheet": "nope"}))


# --- SQL databases ----------------------------------------------------------------------------------


def test_sqlite_table_and_view_agree_with_csv(tmp_path: Path) -> None:
    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE people (id INTEGER, name TEXT, city TEXT, secret TEXT)")
        c.executemany(
            "INSERT INTO people VALUES (?, ?, ?, 'x')", [(r["id"], r["name"], r["city"]) for r in ROWS]
        )
        c.execute("CREATE VIEW people_v AS SELECT id, name, city FROM people")
    with connect(open_source(f"sqlite:///{db}", table="people_v")) as conn:
        assert conn.schema.names == ("id", "name", "city")
        assert fingerprint(conn).value == _fp(_csv(tmp_path))


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    db = tmp_path / "junk.db"
    db.write_bytes(b"this is not an sqlite database at all" * 100)
    with pytest.raises(SourceError, match=r"junk\.db.*cannot connect"):
        connect(open_source(f"sqlite:///{db}", table="t"))


def test_postgresql_table_and_view(pg_server: object, tmp_path: Path) -> None:
    url = pg_server.create_database("dv_readers")  # type: ignore[attr-defined]
    try:
        engine = sa.create_engine(url)
        with engine.begin() as c:
            c.execute(sa.text("CREATE TABLE people (id INTEGER, name TEXT, city TEXT)"))
            for r in ROWS:
                c.execute(sa.text("INSERT INTO people VALUES (:id, :name, :city)"), r)
            c.execute(sa.text("CREATE VIEW people_v AS SELECT id, name, city FROM people WHERE id > 1"))
        engine.dispose()
        assert _fp(url, table="public.people") == _fp(_csv(tmp_path))
        with connect(open_source(url, table="people_v")) as conn:
            assert conn.execute("SELECT count(*) FROM source") == [(2,)]
        with pytest.raises(SourceError, match="table 'nope' does not exist"):
            connect(open_source(url, table="nope"))
    finally:
        pg_server.drop_database("dv_readers")  # type: ignore[attr-defined]
