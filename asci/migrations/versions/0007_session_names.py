"""sessions: environment name and version recorded with the session; backend state kept opaque

The environment and version a session runs never change, so they are recorded with the
session (the session list needs no join into the builder's tables); the container id and
name columns go: what a backend needs to find its container again lives in ``backend_state``.

Revision ID: 0007_session_names
Revises: 0006_user_identity
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_session_names"
down_revision = "0006_user_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("environment", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("version", sa.String(32), nullable=False, server_default=""))
    op.execute(
        "UPDATE sessions SET "
        "environment = COALESCE((SELECT e.name FROM environment_versions v JOIN environments e "
        "ON e.id = v.environment_id WHERE v.id = sessions.environment_version_id), ''), "
        "version = COALESCE((SELECT v.version FROM environment_versions v "
        "WHERE v.id = sessions.environment_version_id), '')")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("container_id")
        batch.drop_column("container_name")


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("container_id", sa.String(80), nullable=False, server_default=""))
        batch.add_column(sa.Column("container_name", sa.String(128), nullable=False, server_default=""))
        batch.drop_column("version")
        batch.drop_column("environment")
