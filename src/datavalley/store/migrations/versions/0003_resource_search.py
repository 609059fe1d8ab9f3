"""resource search: a narrow search index and facet counts for catalog search, backfilled from resources

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 11:20:00.000000

Catalog search used to scan ``resources``, whose rows carry kilobytes of profile and PI JSON. It now
reads ``resource_search`` (one narrow row per resource) and ``resource_facets`` (counts per combination
of facet values); see ``datavalley.rights.tables``. Full text is indexed by engine-specific objects the
models do not declare:

* SQLite: the FTS5 table ``resource_search_fts`` with the trigram tokenizer (SQLite 3.34 or later),
  an external-content index of ``resource_search.search_key`` keyed by ``seq``, kept current by three
  triggers. A later migration that rebuilds ``resource_search`` (Alembic batch mode on SQLite copies the
  table) must recreate the triggers and rebuild the index.
* PostgreSQL: the pg_trgm GIN index ``ix_resource_search_key_trgm``. It replaces
  ``ix_resources_search_trgm`` on ``resources`` (migration 0001), which search no longer reads.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from datavalley.rights.tables import search_key

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_FTS_TRIGGERS = (
    """CREATE TRIGGER resource_search_fts_insert AFTER INSERT ON resource_search BEGIN
        INSERT INTO resource_search_fts (rowid, search_key) VALUES (new.seq, new.search_key);
    END""",
    """CREATE TRIGGER resource_search_fts_delete AFTER DELETE ON resource_search BEGIN
        INSERT INTO resource_search_fts (resource_search_fts, rowid, search_key)
        VALUES ('delete', old.seq, old.search_key);
    END""",
    """CREATE TRIGGER resource_search_fts_update AFTER UPDATE OF search_key ON resource_search BEGIN
        INSERT INTO resource_search_fts (resource_search_fts, rowid, search_key)
        VALUES ('delete', old.seq, old.search_key);
        INSERT INTO resource_search_fts (rowid, search_key) VALUES (new.seq, new.search_key);
    END""",
)
_FACETS = ("provider_id", "published", "status", "sector", "effective_grade", "pii_present")
_BATCH = 2_000


def upgrade() -> None:
    op.create_table(
        "resource_facets",
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sector", sa.String(length=64), nullable=False),
        sa.Column("effective_grade", sa.String(length=16), nullable=False),
        sa.Column("pii_present", sa.Boolean(), nullable=False),
        sa.Column("resource_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(*_FACETS, name=op.f("pk_resource_facets")),
    )
    op.create_table(
        "resource_search",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider_id", sa.String(length=40), nullable=False),
        sa.Column("published", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("sector", sa.String(length=64), nullable=False),
        sa.Column("effective_grade", sa.String(length=16), nullable=False),
        sa.Column("pii_present", sa.Boolean(), nullable=False),
        sa.Column("search_key", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["id"], ["resources.id"], name=op.f("fk_resource_search_id_resources")),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_resource_search")),
        sa.UniqueConstraint("id", name=op.f("uq_resource_search_id")),
    )
    with op.batch_alter_table("resource_search", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resource_search_provider_id"), ["provider_id"], unique=False)

    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute(
            "CREATE VIRTUAL TABLE resource_search_fts USING fts5(search_key, content='resource_search', "
            "content_rowid='seq', tokenize='trigram case_sensitive 1')"
        )
        for trigger in _FTS_TRIGGERS:
            op.execute(trigger)
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_resources_search_trgm")
        op.execute(
            "CREATE INDEX ix_resource_search_key_trgm ON resource_search USING gin (search_key gin_trgm_ops)"
        )
    _backfill()


def _backfill() -> None:
    """One search row per existing resource (in ID order) and the facet counts over them."""
    conn = op.get_bind()
    resources = sa.table(
        "resources",
        sa.column("id", sa.String),
        *(
            sa.column(name, sa.Boolean if name in ("published", "pii_present") else sa.String)
            for name in _FACETS
        ),
        sa.column("search_text", sa.Text),
    )
    search = sa.table(
        "resource_search",
        sa.column("id", sa.String),
        *(
            sa.column(name, sa.Boolean if name in ("published", "pii_present") else sa.String)
            for name in _FACETS
        ),
        sa.column("search_key", sa.Text),
    )
    last = ""
    while True:
        rows = conn.execute(
            sa.select(resources).where(resources.c.id > last).order_by(resources.c.id).limit(_BATCH)
        ).all()
        if not rows:
            break
        conn.execute(
            search.insert(),
            [
                {
                    "id": r.id,
                    **{name: getattr(r, name) for name in _FACETS},
                    "search_key": search_key(r.search_text),
                }
                for r in rows
            ],
        )
        last = rows[-1].id
    facets = sa.table("resource_facets", *(sa.column(name) for name in (*_FACETS, "resource_count")))
    columns = [resources.c[name] for name in _FACETS]
    conn.execute(
        facets.insert().from_select(
            [*_FACETS, "resource_count"], sa.select(*columns, sa.func.count()).group_by(*columns)
        )
    )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER resource_search_fts_{trigger}")
        op.execute("DROP TABLE resource_search_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX ix_resource_search_key_trgm")
        op.execute("CREATE INDEX ix_resources_search_trgm ON resources USING gin (search_text gin_trgm_ops)")
    with op.batch_alter_table("resource_search", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_resource_search_provider_id"))
    op.drop_table("resource_search")
    op.drop_table("resource_facets")
