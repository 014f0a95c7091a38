"""users: the single sign-on identity (issuer + subject) an account is bound to

Revision ID: 0006_user_identity
Revises: 0005_ci
"""
import sqlalchemy as sa
from alembic import op

revision = "0006_user_identity"
down_revision = "0005_ci"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("external_id", sa.String(400), nullable=True))
        batch.create_unique_constraint("uq_users_external_id", ["external_id"])


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_external_id", type_="unique")
        batch.drop_column("external_id")
