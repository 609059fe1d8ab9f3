"""privacy delta: δ spent by DP key thresholding is charged per use and summed per contract

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 17:00:00.000000

``contract_uses.privacy_delta`` records the δ of one use (private SQL queries whose group keys are
released by DP thresholding); ``contracts.delta_spent`` is their sum (basic composition of δ).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contracts") as batch:
        batch.add_column(sa.Column("delta_spent", sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("contract_uses") as batch:
        batch.add_column(sa.Column("privacy_delta", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("contract_uses") as batch:
        batch.drop_column("privacy_delta")
    with op.batch_alter_table("contracts") as batch:
        batch.drop_column("delta_spent")
