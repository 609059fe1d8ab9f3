"""The migrations produce exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

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
        # The trigram index exists only on PostgreSQL (created by migration 0001 for catalog search);
        # it has no model-level declaration because SQLite has no equivalent.
        diff = [d for d in diff if not (d[0] == "remove_index" and d[1].name == "ix_resources_search_trgm")]
        assert diff == []
    finally:
        engine.dispose()
