"""operations: node usage samples over time (the administration page's capacity charts)

Revision ID: 0016_operations
Revises: 0015_tenancy
"""
import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0016_operations"
down_revision = "0015_tenancy"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "node_usage_samples",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("guaranteed_cpus", sa.Float(), nullable=False),
        sa.Column("schedulable_cpus", sa.Float(), nullable=False),
        sa.Column("guaranteed_memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("schedulable_memory_bytes", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_node_usage_samples_at", "node_usage_samples", ["at"])


def downgrade() -> None:
    op.drop_index("ix_node_usage_samples_at", table_name="node_usage_samples")
    op.drop_table("node_usage_samples")
