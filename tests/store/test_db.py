"""Storage: SQLite pragmas, migrations applied once, refusal of an unknown (newer) schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from datavalley.errors import SchemaError
from datavalley.store.db import current_revision, head_revision, make_engine, migrate


def test_sqlite_runs_wal_with_foreign_keys(tmp_path: Path) -> None:
    """Embedded SQLite uses WAL, enforces foreign keys and syncs fully on commit."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2
    engine.dispose()


def test_migrate_is_idempotent_and_reaches_head(tmp_path: Path) -> None:
    """migrate() brings an empty database to head and is a no-op the second time."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert current_revision(engine) is None
    assert migrate(engine) == head_revision() == current_revision(engine)
    assert migrate(engine) == head_revision()
    engine.dispose()


def test_refuses_a_newer_schema(tmp_path: Path) -> None:
    """A database stamped with a revision this code does not know raises SchemaError, untouched."""
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'f00d_from_the_future'"))
    with pytest.raises(SchemaError, match="f00d_from_the_future"):
        migrate(engine)
    assert current_revision(engine) == "f00d_from_the_future"
    engine.dispose()


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    """A member pointing at a missing participant is rejected by the database itself."""
    from sqlalchemy.exc import IntegrityError

    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    migrate(engine)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO members (id, participant_id, name, kind, roles, admin, active, created_at) "
                "VALUES ('m_x', 'p_missing', 'n', 'person', '[]', 0, 1, '2026-01-01')"
            )
        )
    engine.dispose()
