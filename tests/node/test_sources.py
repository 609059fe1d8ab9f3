"""Source resolution: every registered family serves private SQL and PSI, through verified snapshots;
a changed file or table is refused until re-registered; the engine is chosen by node setting or product."""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from pathlib import Path

import duckdb
import openpyxl
import pytest
import sqlalchemy as sa

from conftest import World
from datavalley import demo_data
from datavalley.errors import Conflict, InvalidInput, PolicyViolation
from datavalley.node.analysis import analyse_source, location_of, registration_payload
from datavalley.node.registry import NodeRegistry
from datavalley.node.sources import AggregatedDataset, SourceResolver, choose_engine, psi_aggregates
from datavalley.psi.normalise import IdKind
from market.conftest import Party, negotiate

ROWS = [(1, "13800138000", "张三", 120), (2, "138 0013 8000", "张三", 80), (3, "13900139000", "李四", 50)]


def _register(home: Path, rid: str, location: str, **kw: object) -> str:
    analysis = analyse_source(location, **kw)  # type: ignore[arg-type]
    NodeRegistry(home).record(rid, location_of(analysis.source, analysis.fingerprint))
    return analysis.fingerprint


def _families(tmp: Path) -> dict[str, tuple[str, dict[str, object]]]:
    header = ("trip", "phone", "name", "fare")
    rows = [dict(zip(header, r, strict=True)) for r in ROWS]
    text = "trip;phone;name;fare\n" + "".join(f"{a};{b};{c};{d}\n" for a, b, c, d in ROWS)
    (tmp / "gb.csv").write_bytes(text.encode("gb18030"))
    (tmp / "a.json").write_text(json.dumps(rows, ensure_ascii=False), "utf-8")
    duckdb.sql(
        f"COPY (SELECT * FROM read_json('{tmp / 'a.json'}')) TO '{tmp / 'a.parquet'}' (FORMAT parquet)"
    )
    book = openpyxl.Workbook()
    ws = book.active
    assert ws is not None
    ws.append(list(header))
    for r in ROWS:
        ws.append(list(r))
    book.save(tmp / "a.xlsx")
    db = tmp / "shop.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE trips (trip INTEGER, phone TEXT, name TEXT, fare INTEGER)")
        c.executemany("INSERT INTO trips VALUES (?, ?, ?, ?)", ROWS)
        c.execute("CREATE VIEW big_trips AS SELECT * FROM trips WHERE fare > 60")
    return {
        "csv-gb18030": (str(tmp / "gb.csv"), {}),
        "json-array": (str(tmp / "a.json"), {}),
        "parquet": (str(tmp / "a.parquet"), {}),
        "xlsx": (str(tmp / "a.xlsx"), {}),
        "sqlite-table": (f"sqlite:///{db}", {"table": "trips"}),
        "sqlite-view": (f"sqlite:///{db}", {"table": "big_trips"}),
    }


def test_every_family_resolves_to_a_verified_snapshot_with_per_id_aggregates(tmp_path: Path) -> None:
    resolver = SourceResolver(tmp_path)
    for name, (location, kw) in _families(tmp_path).items():
        fp = _register(tmp_path, f"r_{name}", location, **kw)
        snap = resolver.snapshot(f"r_{name}", fp)
        assert snap.fingerprint == fp and snap.path.is_file(), name
        assert oct(snap.path.stat().st_mode & 0o777) == "0o600"
        assert oct(snap.path.parent.stat().st_mode & 0o777) == "0o700"
        aggs = psi_aggregates(
            {
                "columns": {"fare_sum": [0, 150], "trips": [0, 5]},
                "aggregates": {
                    "fare_sum": {"function": "sum", "column": "fare"},
                    "trips": {"function": "count"},
                },
            }
        )
        got = dict(AggregatedDataset(snap, "phone", IdKind.PHONE, aggs).records(("fare_sum", "trips")))
        if name == "sqlite-view":  # fare > 60: one trip of each of the two 13800138000 spellings
            assert got == {"+8613800138000": (200, 2)}
        else:
            # the two spellings of 张三's phone are one ID: both trips are summed (clamping is prepare's job)
            assert got == {"+8613800138000": (200, 2), "+8613900139000": (50, 1)}, name


def test_a_changed_table_is_refused_until_re_registered(tmp_path: Path) -> None:
    location, kw = _families(tmp_path)["sqlite-table"]
    fp = _register(tmp_path, "r_t", location, **kw)
    resolver = SourceResolver(tmp_path)
    first = resolver.snapshot("r_t", fp)
    assert resolver.snapshot("r_t", fp) == first  # unchanged: the snapshot is reused
    with sqlite3.connect(tmp_path / "shop.db") as c:
        c.execute("UPDATE trips SET fare = fare + 1 WHERE trip = 3")
    with pytest.raises(Conflict, match=r"not the registered version.*register the change first"):
        resolver.snapshot("r_t", fp)
    new_fp = _register(tmp_path, "r_t", location, **kw)
    assert new_fp != fp
    again = resolver.snapshot("r_t", new_fp)
    assert again.fingerprint == new_fp and not first.path.exists()  # the old version's copy is gone


def test_unreadable_or_unknown_sources_are_conflicts(tmp_path: Path) -> None:
    location, _ = _families(tmp_path)["json-array"]
    fp = _register(tmp_path, "r_j", location)
    resolver = SourceResolver(tmp_path)
    Path(location).write_text('[{"trip": 1, "phone": ', "utf-8")
    with pytest.raises(Conflict, match=r"cannot read its copy of resource r_j: .*Malformed JSON"):
        resolver.snapshot("r_j", fp)
    with pytest.raises(Conflict, match="not held by this node"):
        resolver.snapshot("r_nope", fp)


def test_psi_aggregates_refuse_non_integer_columns_and_unknown_names(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_text("phone,fare\n13800138000,1.5\n", "utf-8")
    fp = _register(tmp_path, "r_f", str(path))
    snap = SourceResolver(tmp_path).snapshot("r_f", fp)
    with pytest.raises(Conflict, match="column 'fare' is float; PSI sums integers"):
        AggregatedDataset(snap, "phone", IdKind.PHONE, psi_aggregates({"columns": {"fare": [0, 9]}}))
    ds = AggregatedDataset(snap, "phone", IdKind.PHONE, {})
    with pytest.raises(InvalidInput, match="not offered"):
        list(ds.records(("fare",)))


def test_postgresql_table_is_snapshotted_and_its_changes_refused(pg_server: object, tmp_path: Path) -> None:
    url = pg_server.create_database("dv_node_sources")  # type: ignore[attr-defined]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as c:
            c.execute(sa.text("CREATE TABLE trips (trip INTEGER, phone TEXT, name TEXT, fare INTEGER)"))
            for r in ROWS:
                c.execute(
                    sa.text("INSERT INTO trips VALUES (:a, :b, :c, :d)"), dict(zip("abcd", r, strict=True))
                )
        fp = _register(tmp_path, "r_pg", url, table="public.trips")
        parquet = _families(tmp_path)["parquet"][0]
        assert fp == _register(tmp_path, "r_pq", parquet)  # the same rows as the Parquet file
        resolver = SourceResolver(tmp_path)
        assert resolver.snapshot("r_pg", fp).row_count == 3
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM trips WHERE trip = 3"))
        with pytest.raises(Conflict, match="not the registered version"):
            resolver.snapshot("r_pg", fp)
    finally:
        engine.dispose()
        pg_server.drop_database("dv_node_sources")  # type: ignore[attr-defined]


def test_engine_choice() -> None:
    assert choose_engine("duckdb", {}) == "duckdb"
    assert choose_engine("duckdb", {"engine": "spark"}) == "spark"
    assert choose_engine("spark", {}) == "spark"
    with pytest.raises(InvalidInput, match="unknown engine 'presto'"):
        choose_engine("presto", {})


# --- private SQL through the node's query service, on a database table, with both engines ----------


def _trips_db(tmp_path: Path) -> Path:
    trips = demo_data.write_trips(tmp_path / "trips.csv", 1_500)
    db = tmp_path / "trips.db"
    with trips.open(encoding="utf-8") as fh, sqlite3.connect(db) as c:
        rows = list(csv.reader(fh))
        cols = rows[0]
        types = {"distance_km": "REAL", "fare_cny": "REAL"}
        declared = ", ".join(f"{n} {types.get(n, 'TEXT')}" for n in cols)
        c.execute(f"CREATE TABLE trips ({declared})")
        c.executemany(f"INSERT INTO trips VALUES ({', '.join('?' * len(cols))})", rows[1:])
    os.unlink(trips)
    return db


def _product(world: World, provider: Party, consumer: Party, rid: str, **extra: object) -> str:
    product = provider.client.create_product(
        name=f"Trips {extra or 'duckdb'}",
        kind="private_analytics",
        resource_ids=[rid],
        price={"model": "per_query", "amount": 100},
        terms={
            "purposes": ["insurance-pricing"],
            "max_uses": 20,
            "tables": {"trips": rid},
            "privacy": {
                "min_group_size": 10,
                "epsilon": 100.0,
                "privacy_unit": "driver_id",
                "rules": {"clamps": {"fare_cny": [0, 4000]}, "max_rows_per_unit": 50},
            },
            **extra,
        },
    ).value
    provider.client.product_action(product.id, "submit")
    world.operator.product_action(product.id, "review", {"approve": True})
    return negotiate(provider, consumer, product.id, max_uses=20).id


SQL = "SELECT dest_province, COUNT(*) AS trips, SUM(fare_cny) AS fares FROM trips GROUP BY dest_province"


# The exchange's own database is irrelevant here (the data is the node's): one backend keeps it quick.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_private_sql_on_a_sqlite_table_with_duckdb_and_spark(
    world: World, logistics: Party, insurer: Party, tmp_path: Path
) -> None:
    db = _trips_db(tmp_path)
    analysis = analyse_source(f"sqlite:///{db}", table="trips")
    rid = logistics.client.register_resource(
        name="Trips table",
        sector="transport",
        lawful_source="driver contracts",
        analysis=registration_payload(analysis),
        published=True,
    ).value.id
    NodeRegistry(world.home).record(rid, location_of(analysis.source, analysis.fingerprint))
    world.operator.resource_action(rid, "classification", {"grade": "general", "reason": "ok"})
    with sqlite3.connect(db) as c:
        truth = dict(c.execute("SELECT dest_province, COUNT(*) FROM trips GROUP BY 1").fetchall())

    answers = {}
    for engine in ("duckdb", "spark"):
        contract = _product(
            world, logistics, insurer, rid, **({"engine": "spark"} if engine == "spark" else {})
        )
        answer = insurer.client.query(contract, SQL, epsilon=50.0)
        assert answer["charged"] == pytest.approx(50.0) and answer["columns"] == [
            "dest_province",
            "trips",
            "fares",
        ]
        # same privacy properties: each unit's contribution is bounded (so the truth bounds the noisy
        # count from above), the noise has its declared interval, small groups are suppressed
        for i, row in enumerate(answer["rows"]):
            lo, hi = answer["noise"][i][1]["ci95"]
            assert lo <= row[1] <= hi and row[1] <= truth[row[0]] + (hi - lo)
        assert answer["rows"]  # provinces with at least the minimum group size are released
        with pytest.raises(PolicyViolation):  # row-level SQL is refused by either engine
            insurer.client.query(contract, "SELECT driver_id FROM trips")
        answers[engine] = (answer, contract)
    # the same compiled plan in both engines: equal exact values, so the releases differ by noise only
    duck = {
        r[0]: (r[1], a)
        for r, a in zip(answers["duckdb"][0]["rows"], answers["duckdb"][0]["noise"], strict=True)
    }
    spark = {
        r[0]: (r[1], a)
        for r, a in zip(answers["spark"][0]["rows"], answers["spark"][0]["noise"], strict=True)
    }
    assert set(duck) & set(spark)
    for province in set(duck) & set(spark):
        width = sum(x[1][1]["ci95"][1] - x[1][1]["ci95"][0] for x in (duck[province], spark[province]))
        assert abs(duck[province][0] - spark[province][0]) <= width

    with sqlite3.connect(db) as c:  # the table changes: every engine refuses it until re-registered
        c.execute("DELETE FROM trips WHERE rowid % 7 = 0")
    for _, contract in answers.values():
        with pytest.raises(Conflict, match="not the registered version"):
            insurer.client.query(contract, "SELECT COUNT(*) AS n FROM trips", epsilon=1.0)


def test_product_terms_validate_engine_and_psi_aggregates() -> None:
    from datavalley.market.model import ProductKind
    from datavalley.market.products import parse_terms

    base = {"purposes": ["p"], "privacy": {"min_group_size": 5, "epsilon": 1.0}}
    assert parse_terms(ProductKind.PRIVATE_ANALYTICS, {**base, "engine": "spark"})["engine"] == "spark"
    with pytest.raises(InvalidInput, match=r"terms\.engine"):
        parse_terms(ProductKind.PRIVATE_ANALYTICS, {**base, "engine": "presto"})
    psi = {
        "purposes": ["p"],
        "psi_modes": ["aggregate"],
        "privacy": {"epsilon": 2.0},
        "psi": {
            "id_column": "phone",
            "id_kind": "phone",
            "columns": {"fares": [0, 500], "trips": [0, 9]},
            "aggregates": {"fares": {"function": "sum", "column": "fare"}, "trips": {"function": "count"}},
        },
    }
    terms = parse_terms(ProductKind.SET_INTERSECTION, psi)["psi"]
    got = psi_aggregates(terms)
    assert (got["fares"].function, got["fares"].column, got["fares"].upper) == ("sum", "fare", 500)
    assert (got["trips"].function, got["trips"].column) == ("count", None)
    assert "SUM(fare) over all of the provider's rows of each ID" in got["fares"].describe()
    bad = {**psi, "psi": {**psi["psi"], "aggregates": {"fares": {"function": "median", "column": "f"}}}}
    with pytest.raises(InvalidInput, match="must be"):
        parse_terms(ProductKind.SET_INTERSECTION, bad)
    unbounded = {**psi, "psi": {**psi["psi"], "aggregates": {"x": {"function": "count"}}}}
    with pytest.raises(InvalidInput, match=r"needs its per-ID bounds in terms\.psi\.columns\.x"):
        parse_terms(ProductKind.SET_INTERSECTION, unbounded)


def test_cli_analyze_takes_reader_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    from datavalley.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        old, sys.argv = sys.argv, ["datavalley", "--json", *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        finally:
            sys.argv = old
        out = capsys.readouterr()
        return code, out.out, out.err

    path = tmp_path / "l.csv"
    path.write_bytes("id|name\n1|Zoë\n2|Åsa\n".encode("latin-1"))
    code, _, err = run("resources", "analyze", str(path))
    assert code != 0 and "cannot detect the text encoding" in err and "Traceback" not in err
    code, out, _ = run("resources", "analyze", str(path), "--option", "encoding=latin-1")
    assert code == 0 and json.loads(out)["row_count"] == 2
    assert [c for c, _ in json.loads(out)["schema"]] == ["id", "name"]
    code, _, err = run("resources", "analyze", str(path), "--option", "encoding")
    assert code != 0 and "--option must be KEY=VALUE" in err


def test_invalid_ids_pass_through_once_per_row_so_the_report_counts_them(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(
        "phone,fare\nnot-a-phone,1\nnot-a-phone,2\n13800138000,5\n+86 138 0013 8000,7\n,3\n", "utf-8"
    )
    fp = _register(tmp_path, "r_ids", str(path))
    snap = SourceResolver(tmp_path).snapshot("r_ids", fp)
    aggs = psi_aggregates({"columns": {"fare": [0, 100]}})
    got = list(AggregatedDataset(snap, "phone", IdKind.PHONE, aggs).records(("fare",)))
    assert got[0] == ("+8613800138000", (12,))
    assert sorted(got[1:], key=str) == sorted([("not-a-phone", (None,))] * 2 + [(None, (None,))], key=str)
