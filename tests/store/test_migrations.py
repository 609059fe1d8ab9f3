"""The migrations produce exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from datavalley.store.db import make_engine, migrate
from datavalley.store.schema import metadata


def test_migrated_schema_matches_the_models(tmp_path: Path, database_url: str | None) -> None:
    """A migrated database has no difference from the declared tables (a forgotten migration fails here)."""
    engine = make_engine(database_url or f"sqlite:///{tmp_path / 'x.db'}")
    try:
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        # Catalog search's full-text indexes are engine-specific and have no model-level declaration
        # (migration 0003): a pg_trgm GIN index on PostgreSQL, an FTS5 table and its shadow tables on
        # SQLite.
        diff = [d for d in diff if not _engine_specific_search_index(d)]
        assert diff == []
    finally:
        engine.dispose()


def _engine_specific_search_index(difference: Any) -> bool:
    kind, obj = difference[0], difference[1]
    if kind == "remove_index":
        return bool(obj.name == "ix_resource_search_key_trgm")
    return kind == "remove_table" and str(obj.name).startswith("resource_search_fts")
