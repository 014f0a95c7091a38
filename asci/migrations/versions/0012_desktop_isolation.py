"""desktop isolation: VNC on a per-session Unix socket, no port leases, a view-only password

Desktops no longer share the node's network: each has a network namespace of its own and serves
VNC on a Unix socket in a per-session folder. Ports, port leases, display numbers and the
address websockify reached VNC on have no job any more; the session records the host path of its
socket instead, and a second random password (view-only, for sharing a desktop).

It comes after heartbeats, capacity, rights and layers (issue 11 was written beside issues 12, 13
and 16 and merged after them; until the files were renumbered in chain order its revision was
``0008_desktop_isolation``, see ``RENAMED_REVISIONS`` in ``asci/migrations/env.py``). On SQLite the tables are rebuilt (batch mode) with
foreign keys off (``asci/migrations/env.py``), so no rebuild cascades into sessions or leases.

Sessions still running when this migration runs were started with host networking; they keep
running but their viewers cannot reach them through the new path: stop them before upgrading.

Revision ID: 0012_desktop_isolation
Revises: 0011_layers
"""
import sqlalchemy as sa
from alembic import op

revision = "0012_desktop_isolation"
down_revision = "0011_layers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("port_leases")
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("vnc_socket", sa.String(500), nullable=False, server_default=""))
        batch.add_column(sa.Column("vnc_view_password", sa.String(64), nullable=False, server_default=""))
        batch.drop_column("vnc_port")
        batch.drop_column("display")
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("vnc_host")
        batch.drop_column("port_min")
        batch.drop_column("port_max")


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("vnc_host", sa.String(255), nullable=False, server_default="127.0.0.1"))
        batch.add_column(sa.Column("port_min", sa.Integer(), nullable=False, server_default="5901"))
        batch.add_column(sa.Column("port_max", sa.Integer(), nullable=False, server_default="5999"))
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("vnc_port", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("display", sa.Integer(), nullable=True))
        batch.drop_column("vnc_view_password")
        batch.drop_column("vnc_socket")
    op.create_table(
        "port_leases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("node_id", sa.Integer(), sa.ForeignKey("nodes.id", ondelete="CASCADE",
                                                         name="fk_port_leases_node_id_nodes"), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), sa.ForeignKey("sessions.id", ondelete="CASCADE",
                                                            name="fk_port_leases_session_id_sessions"),
                  nullable=False),
        sa.UniqueConstraint("node_id", "port", name="uq_port_leases_node_port"),
        sa.UniqueConstraint("session_id", name="uq_port_leases_session_id"),
    )
