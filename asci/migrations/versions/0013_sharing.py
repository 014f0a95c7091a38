"""sharing: desktops shared with experiment colleagues, their viewers' connections, the audit log

Revision ID: 0013_sharing
Revises: 0012_desktop_isolation
"""
import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0013_sharing"
down_revision = "0012_desktop_isolation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_action", "audit_events", ["action"])
    op.create_table(
        "session_shares",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("guest_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_session_shares_session_id", "session_shares", ["session_id"])
    op.create_index("ix_session_shares_guest_id_session_id", "session_shares", ["guest_id", "session_id"])
    op.create_table(
        "viewer_connections",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("share_id", sa.Integer(), sa.ForeignKey("session_shares.id", ondelete="CASCADE"), nullable=True),
        sa.Column("connected_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_viewer_connections_session_id", "viewer_connections", ["session_id"])
    op.create_index("ix_viewer_connections_share_id", "viewer_connections", ["share_id"])


def downgrade() -> None:
    op.drop_table("viewer_connections")
    op.drop_table("session_shares")
    op.drop_table("audit_events")
