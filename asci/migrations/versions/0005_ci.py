"""build jobs and ci cursors

Revision ID: 0005_ci
Revises: 0004_broker
"""
import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0005_ci"
down_revision = "0004_broker"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "build_jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("environment", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("not_before", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("version", sa.String(32), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
    )
    op.create_index("uq_build_jobs_one_queued", "build_jobs", ["environment"], unique=True,
                    postgresql_where=sa.text("state = 'queued'"), sqlite_where=sa.text("state = 'queued'"))
    op.create_index("uq_build_jobs_one_running", "build_jobs", ["environment"], unique=True,
                    postgresql_where=sa.text("state = 'running'"), sqlite_where=sa.text("state = 'running'"))
    op.create_index("ix_build_jobs_state_not_before", "build_jobs", ["state", "not_before"])
    op.create_table(
        "ci_cursors",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("position", sa.Text(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ci_cursors")
    op.drop_index("ix_build_jobs_state_not_before", table_name="build_jobs")
    op.drop_index("uq_build_jobs_one_running", table_name="build_jobs")
    op.drop_index("uq_build_jobs_one_queued", table_name="build_jobs")
    op.drop_table("build_jobs")
