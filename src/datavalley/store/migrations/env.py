"""Alembic environment: migrations run on the connection datavalley hands over (see store/db.py)."""

from __future__ import annotations

from alembic import context

from datavalley.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when alembic is invoked by hand
    raise RuntimeError("run migrations through datavalley.store.db.migrate()")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
