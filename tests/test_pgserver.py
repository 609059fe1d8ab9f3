"""The throwaway PostgreSQL server used by the test suite really works."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

import pgserver
from pgserver import PostgresServer, require_postgres


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    require_postgres()
    with PostgresServer(tmp_path_factory.mktemp("pg")) as pg:
        yield pg


def _engine_scalar(url: str, query: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_server_runs_real_queries(server: PostgresServer) -> None:
    assert server.running
    url = server.create_database("dv_version")
    assert url == f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/dv_version"
    version = str(_engine_scalar(url, "SELECT version()"))
    assert "PostgreSQL" in version
    major = Path(server.bin_dir).parent.name
    if major.isdigit():
        assert f"PostgreSQL {major}" in version
    assert _engine_scalar(url, "SELECT current_database()") == "dv_version"
    assert _engine_scalar(url, "SHOW max_connections") == "200"
    assert _engine_scalar(url, "SHOW fsync") == "off"
    assert _engine_scalar(url, "SHOW server_encoding") == "UTF8"
    server.drop_database("dv_version")
    assert "dv_version" not in server.list_databases()


@pytest.mark.postgres
def test_unix_socket_is_available(server: PostgresServer) -> None:
    assert (server.socket_dir / f".s.PGSQL.{server.port}").exists()
    with psycopg.connect(host=str(server.socket_dir), port=server.port, user="postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.postgres
def test_databases_are_isolated(server: PostgresServer) -> None:
    url_a = server.create_database("dv_iso_a")
    url_b = server.create_database("dv_iso_b")
    try:
        engine_a, engine_b = sa.create_engine(url_a), sa.create_engine(url_b)
        try:
            with engine_a.begin() as conn:
                conn.execute(sa.text("CREATE TABLE item (id int primary key, name text)"))
                conn.execute(sa.text("INSERT INTO item VALUES (1, 'only in a')"))
            with engine_b.connect() as conn:
                exists = conn.execute(sa.text("SELECT to_regclass('public.item') IS NOT NULL")).scalar_one()
                assert exists is False
            with engine_b.begin() as conn:
                conn.execute(sa.text("CREATE TABLE item (id int primary key, name text)"))
            with engine_a.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM item")).scalar_one() == 1
            with engine_b.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM item")).scalar_one() == 0
        finally:
            engine_a.dispose()
            engine_b.dispose()
    finally:
        # WITH (FORCE) drops even with sessions open.
        server.drop_database("dv_iso_a")
        server.drop_database("dv_iso_b")
    assert not {"dv_iso_a", "dv_iso_b"} & set(server.list_databases())


@pytest.mark.postgres
def test_stop_really_stops(tmp_path: Path) -> None:
    require_postgres()
    started = time.monotonic()
    pg = PostgresServer(tmp_path).start()
    assert time.monotonic() - started < 5, "server start should be fast"
    port, workdir = pg.port, pg.workdir
    assert port is not None and workdir is not None
    postmaster_pid = int((pg.data_dir / "postmaster.pid").read_text().splitlines()[0])
    assert pgserver._port_open(port)

    pg.stop()
    assert not pg.running
    assert not pgserver._port_open(port)
    with pytest.raises(ProcessLookupError):
        os.kill(postmaster_pid, 0)
    assert not workdir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user="postgres", connect_timeout=2)
    pg.stop()  # idempotent


@pytest.mark.postgres
def test_context_manager_stops_on_error(tmp_path: Path) -> None:
    require_postgres()
    with pytest.raises(RuntimeError, match="boom"), PostgresServer(tmp_path) as pg:
        port = pg.port
        raise RuntimeError("boom")
    assert port is not None
    assert not pgserver._port_open(port)
    assert pg.workdir is None


@pytest.mark.postgres
def test_stale_servers_are_reaped(tmp_path: Path) -> None:
    """A server whose owning test process died is stopped by the next start in that directory."""
    require_postgres()
    pg = PostgresServer(tmp_path).start()
    port, workdir = pg.port, pg.workdir
    assert port is not None and workdir is not None
    gone = subprocess.Popen(["true"])  # its pid no longer exists once reaped
    gone.wait()
    (workdir / pgserver.OWNER_FILE).write_text(f"{gone.pid}\n")
    # Forget the server without stopping it, as a killed test run would.
    orphan, pg._proc = pg._proc, None
    pg.workdir = None
    pgserver._RUNNING.discard(pg)
    try:
        with PostgresServer(tmp_path):
            assert not workdir.exists()
        assert orphan is not None
        orphan.wait(timeout=10)
        assert not pgserver._port_open(port)
    finally:
        if orphan is not None and orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_require_postgres_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgserver, "unavailable_reason", lambda: "no binaries here")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no binaries here"):
        require_postgres()


def test_require_postgres_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgserver, "unavailable_reason", lambda: "no binaries here")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no binaries here"):
        require_postgres()


def test_require_postgres_passes_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pgserver, "unavailable_reason", lambda: None)
    monkeypatch.setenv("CI", "true")
    require_postgres()  # neither skips nor fails


def test_find_pg_bin_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATAVALLEY_PG_BIN", str(tmp_path))
    assert pgserver.find_pg_bin() is None  # set but invalid: reported, not silently ignored
    for name in pgserver.REQUIRED_BINARIES:
        tool = tmp_path / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    assert pgserver.find_pg_bin() == tmp_path


def test_unavailable_reason_is_lazy_module_attribute() -> None:
    assert pgserver.unavailable_reason() == pgserver.PG_UNAVAILABLE_REASON
