"""delivery: recipients of delivery contracts, hashed sharing tokens, metered reads

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import datavalley.store.base

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "delivery_recipients",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("created_at", datavalley.store.base.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", datavalley.store.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_delivery_recipients_contract_id_contracts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_recipients")),
        sa.UniqueConstraint("contract_id", "name", name="uq_delivery_recipients_contract_name"),
    )
    with op.batch_alter_table("delivery_recipients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_recipients_contract_id"), ["contract_id"], unique=False)

    op.create_table(
        "delivery_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("recipient_id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", datavalley.store.base.UTCDateTime(), nullable=False),
        sa.Column("expires_at", datavalley.store.base.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", datavalley.store.base.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_delivery_tokens_contract_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["delivery_recipients.id"],
            name=op.f("fk_delivery_tokens_recipient_id_delivery_recipients"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_delivery_tokens_token_hash")),
    )
    with op.batch_alter_table("delivery_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_tokens_contract_id"), ["contract_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_tokens_recipient_id"), ["recipient_id"], unique=False)

    op.create_table(
        "delivery_reads",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("contract_id", sa.String(length=40), nullable=False),
        sa.Column("recipient_id", sa.String(length=40), nullable=False),
        sa.Column("use_id", sa.String(length=40), nullable=False),
        sa.Column("table_name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("files", sa.Integer(), nullable=False),
        sa.Column("created_at", datavalley.store.base.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contract_id"], ["contracts.id"], name=op.f("fk_delivery_reads_contract_id_contracts")
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["delivery_recipients.id"],
            name=op.f("fk_delivery_reads_recipient_id_delivery_recipients"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_reads")),
    )
    with op.batch_alter_table("delivery_reads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_delivery_reads_contract_id"), ["contract_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_delivery_reads_recipient_id"), ["recipient_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("delivery_reads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_reads_recipient_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_reads_contract_id"))
    op.drop_table("delivery_reads")
    with op.batch_alter_table("delivery_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_tokens_recipient_id"))
        batch_op.drop_index(batch_op.f("ix_delivery_tokens_contract_id"))
    op.drop_table("delivery_tokens")
    with op.batch_alter_table("delivery_recipients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_delivery_recipients_contract_id"))
    op.drop_table("delivery_recipients")
