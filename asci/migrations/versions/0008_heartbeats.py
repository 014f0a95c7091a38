"""heartbeats: the last sign of life of each long-running part (web, websockify, worker, loops)

Revision ID: 0008_heartbeats
Revises: 0007_session_names
"""
import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0008_heartbeats"
down_revision = "0007_session_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heartbeats",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("part", sa.String(32), nullable=False),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("restarts", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("beat_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("part", "instance", name="uq_heartbeats_part_instance"),
    )


def downgrade() -> None:
    op.drop_table("heartbeats")
