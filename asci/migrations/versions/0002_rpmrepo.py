"""rpm package index and repository change events

Revision ID: 0002_rpmrepo
Revises: 0001_accounts
"""
import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0002_rpmrepo"
down_revision = "0001_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rpm_packages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("repo", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(100), nullable=False),
        sa.Column("release", sa.String(100), nullable=False),
        sa.Column("arch", sa.String(32), nullable=False),
        sa.Column("filename", sa.String(500), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("buildtime", UTCDateTime(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("requires", sa.JSON(), nullable=False),
        sa.Column("provides", sa.JSON(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.Column("published_by_id", sa.Integer(),
                  sa.ForeignKey("users.id", ondelete="SET NULL", name="fk_rpm_packages_published_by_id_users"),
                  nullable=True),
        sa.Column("retracted", sa.Boolean(), nullable=False),
        sa.Column("retracted_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("repo", "name", "epoch", "version", "release", "arch", name="uq_rpm_packages_nevra"),
        sa.UniqueConstraint("repo", "filename", name="uq_rpm_packages_filename"),
    )
    op.create_index("ix_rpm_packages_repo_name", "rpm_packages", ["repo", "name"])
    op.create_table(
        "repo_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("repo", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("revision", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_repo_events_repo", "repo_events", ["repo"])


def downgrade() -> None:
    op.drop_index("ix_repo_events_repo", table_name="repo_events")
    op.drop_table("repo_events")
    op.drop_index("ix_rpm_packages_repo_name", table_name="rpm_packages")
    op.drop_table("rpm_packages")
