"""environments and environment versions

Revision ID: 0003_builder
Revises: 0002_rpmrepo
"""
import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0003_builder"
down_revision = "0002_rpmrepo"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "environments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("beamline", sa.String(64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("base_image", sa.String(128), nullable=False),
        sa.Column("current_version", sa.String(32), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("name", name="uq_environments_name"),
    )
    op.create_table(
        "environment_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("environment_id", sa.Integer(),
                  sa.ForeignKey("environments.id", ondelete="CASCADE", name="fk_environment_versions_environment_id_environments"),
                  nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("image_reference", sa.String(255), nullable=False),
        sa.Column("image_digest", sa.String(80), nullable=False),
        sa.Column("image_id", sa.String(80), nullable=False),
        sa.Column("lock", sa.JSON(), nullable=False),
        sa.Column("lock_digest", sa.String(64), nullable=False),
        sa.Column("sbom", sa.JSON(), nullable=False),
        sa.Column("recipe_commit", sa.String(64), nullable=False),
        sa.Column("dockerfile", sa.Text(), nullable=False),
        sa.Column("build_log", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("became_current_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("environment_id", "version", name="uq_environment_versions_env_version"),
    )
    op.create_index("ix_environment_versions_environment_id", "environment_versions", ["environment_id"])


def downgrade() -> None:
    op.drop_index("ix_environment_versions_environment_id", table_name="environment_versions")
    op.drop_table("environment_versions")
    op.drop_table("environments")
