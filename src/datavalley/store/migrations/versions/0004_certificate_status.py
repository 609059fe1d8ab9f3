"""certificate status: one certificate per holder of a version, with its status and the event that set it

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:20:00.000000

A holding transfer issues a new certificate for the same resource version to the new holder and supersedes
the old one, so ``(resource_id, version)`` is no longer unique. ``status`` (valid, superseded, cancelled,
revoked) and ``status_event_id`` (the event, hence the ledger entry, that changed it) back the signed
online status (docs/PROTOCOL.md §6). Existing certificates are valid unless their resource was cancelled
or revoked, or a later version superseded them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_constraint("uq_certificates_resource_version", type_="unique")
        batch.add_column(sa.Column("holder_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("status", sa.String(length=16), server_default="valid", nullable=False))
        batch.add_column(sa.Column("status_event_id", sa.BigInteger(), nullable=True))
    # Backfill: older versions are superseded by the newer version's registration; ended resources'
    # certificates take the resource's status (the event that changed it is not linked for old data).
    newer = (
        "FROM certificates n WHERE n.resource_id = certificates.resource_id "
        "AND n.version > certificates.version"
    )
    op.execute(
        f"UPDATE certificates SET status = 'superseded', status_event_id = (SELECT MIN(n.event_id) {newer}) "
        f"WHERE EXISTS (SELECT 1 {newer})"
    )
    ended = "(SELECT r.status FROM resources r WHERE r.id = certificates.resource_id)"
    op.execute(
        f"UPDATE certificates SET status = {ended} "
        f"WHERE status = 'valid' AND {ended} IN ('cancelled', 'revoked')"
    )


def downgrade() -> None:
    with op.batch_alter_table("certificates") as batch:
        batch.drop_column("status_event_id")
        batch.drop_column("status")
        batch.drop_column("holder_id")
        batch.create_unique_constraint("uq_certificates_resource_version", ["resource_id", "version"])
