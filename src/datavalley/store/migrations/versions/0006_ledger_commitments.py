"""ledger commitments: each event keeps the key that opens its committed ledger entry

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 17:40:00.000000

Entries of version 2 publish salted commitments instead of actor, participant, subject IDs and payload
digest (``datavalley.ledger.commitment``); ``events.commit_key`` holds the per-entry key the parties and
overseers receive in openings. Entries sequenced before this revision stay version 1 (clear) and have no key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("commit_key", sa.String(length=64), nullable=True))
    op.create_index("ix_events_ledger_index", "events", ["ledger_index"])
    with op.batch_alter_table("products") as batch:
        batch.add_column(sa.Column("regulator_note", sa.Text(), nullable=True))
    with op.batch_alter_table("contracts") as batch:
        batch.add_column(sa.Column("suspension_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        batch.drop_column("suspension_reason")
    with op.batch_alter_table("products") as batch:
        batch.drop_column("regulator_note")
    op.drop_index("ix_events_ledger_index", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("commit_key")
