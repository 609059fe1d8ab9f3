"""Engines, sessions and migrations for the embedded SQLite store and PostgreSQL.

SQLite runs in WAL mode with foreign keys on and ``synchronous=FULL`` (a committed transaction survives a
power cut, which the ledger's "acknowledged means durable" promise needs). Write transactions start with
``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing half-way when upgrading a read lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection

from datavalley.errors import SchemaError

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url`` with datavalley's connection settings (nothing is created at import)."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=8,
            max_overflow=16,
        )
        _configure_sqlite(engine)
        return engine
    try:
        return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=8, max_overflow=16)
    except ModuleNotFoundError as exc:  # the driver is an optional extra
        from datavalley.errors import Unavailable

        extra = " (pip install 'datavalley[postgres]')" if url.startswith("postgresql") else ""
        raise Unavailable(f"the database driver for this URL is not installed: {exc.name}{extra}") from None


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from pysqlite so BEGIN IMMEDIATE can be issued (SQLAlchemy recipe).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("dv_write", True)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def read_only(engine: Engine) -> Engine:
    """A view of ``engine`` whose transactions do not take SQLite's write lock (reads only)."""
    return engine.execution_options(dv_write=False)


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def current_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest schema revision this code knows."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def migrate(engine: Engine) -> str:
    """Bring the database schema up to this code's head revision and return it.

    Raises :class:`SchemaError` when the database is at a revision this code does not know (a newer
    datavalley wrote it): we never run on, or downgrade, a schema we do not understand.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(cfg)
    current = current_revision(engine)
    if current is not None:
        try:
            script.get_revision(current)
        except Exception as exc:
            raise SchemaError(
                f"database schema revision {current!r} is unknown to this datavalley "
                f"(its newest is {script.get_current_head()!r}); upgrade datavalley before using it",
                revision=current,
            ) from exc
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "head")
    return head_revision()
