"""node agent: a node's agent address (sessions' folders and VNC relays through it) its state at the last reconcile, and its drained flag

Revision ID: 0014_node_agent
Revises: 0013_sharing
"""
import sqlalchemy as sa
from alembic import op

revision = "0014_node_agent"
down_revision = "0013_sharing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("agent", sa.String(255), nullable=False, server_default=""))
        batch.add_column(sa.Column("drained", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("agent_state", sa.String(16), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("agent_state")
        batch.drop_column("drained")
        batch.drop_column("agent")
