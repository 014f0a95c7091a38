"""tenancy: viewer tokens that were used (each opens one WebSocket, once)

Revision ID: 0015_tenancy
Revises: 0014_node_agent
"""
import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0015_tenancy"
down_revision = "0014_node_agent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "viewer_token_uses",
        sa.Column("nonce", sa.String(64), primary_key=True),
        sa.Column("used_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_viewer_token_uses_used_at", "viewer_token_uses", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_viewer_token_uses_used_at", table_name="viewer_token_uses")
    op.drop_table("viewer_token_uses")
