"""environment versions: their layer layout, gc deletion time; reproductions pushed as VERSION-rN

Revision ID: 0011_layers
Revises: 0010_rights
"""
import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0011_layers"
down_revision = "0010_rights"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environment_versions") as batch:
        batch.add_column(sa.Column("layers", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("deleted_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("environment_versions") as batch:
        batch.alter_column("layers", server_default=None)
    op.create_table(
        "reproductions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("environment_version_id", sa.Integer(),
                  sa.ForeignKey("environment_versions.id", ondelete="CASCADE",
                                name="fk_reproductions_environment_version_id_environment_versions"),
                  nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(48), nullable=False),
        sa.Column("image_digest", sa.String(80), nullable=False),
        sa.Column("same_packages", sa.Boolean(), nullable=False),
        sa.Column("layers_same", sa.Integer(), nullable=False),
        sa.Column("layers_total", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("environment_version_id", "number", name="uq_reproductions_number"),
    )
    op.create_index("ix_reproductions_environment_version_id", "reproductions",
                    ["environment_version_id"])


def downgrade() -> None:
    op.drop_index("ix_reproductions_environment_version_id", table_name="reproductions")
    op.drop_table("reproductions")
    with op.batch_alter_table("environment_versions") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("layers")
