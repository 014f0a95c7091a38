"""capacity: a session's guarantee beside its limit; nodes' capacity from the engine, reserve, overcommit

Sessions get ``cpu_guarantee`` and ``memory_guarantee_bytes`` (what placement counts); ``cpus`` and
``memory_bytes`` stay as the limits the container enforces. Sessions recorded before this revision
were placed by their limits, so their guarantee is set to their limit. Nodes get where their CPUs and
memory come from (``engine`` or ``manual``: every existing node was typed in), a reserve and
overcommit factors (neutral for existing nodes: 0 and 1, so their capacity is unchanged). An index on
``(user_id, id)`` serves the cursor-paginated session list.

Revision ID: 0009_capacity
Revises: 0008_heartbeats
"""
import sqlalchemy as sa
from alembic import op

revision = "0009_capacity"
down_revision = "0008_heartbeats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("cpu_guarantee", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("memory_guarantee_bytes", sa.BigInteger(), nullable=False, server_default="0"))
    op.execute("UPDATE sessions SET cpu_guarantee = cpus, memory_guarantee_bytes = memory_bytes")
    op.create_index("ix_sessions_user_id_id", "sessions", ["user_id", "id"])
    with op.batch_alter_table("nodes") as batch:
        batch.add_column(sa.Column("capacity_source", sa.String(16), nullable=False, server_default="manual"))
        batch.add_column(sa.Column("reserve_cpus", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("reserve_memory_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("cpu_overcommit", sa.Float(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("memory_overcommit", sa.Float(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        for column in ("memory_overcommit", "cpu_overcommit", "reserve_memory_bytes", "reserve_cpus",
                       "capacity_source"):
            batch.drop_column(column)
    op.drop_index("ix_sessions_user_id_id", table_name="sessions")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("memory_guarantee_bytes")
        batch.drop_column("cpu_guarantee")
