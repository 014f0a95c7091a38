"""broker: experiments, nodes, sessions, port and GPU leases

Revision ID: 0004_broker
Revises: 0003_builder
"""
import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0004_broker"
down_revision = "0003_builder"
branch_labels = None
depends_on = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKey:
    return sa.ForeignKey(f"{target}.id", ondelete=ondelete, name=f"fk_{table}_{column}_{target}")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("data_path", sa.String(1000), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=True),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("code", name="uq_experiments_code"),
    )
    op.create_table(
        "experiment_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(), _fk("experiment_members", "experiment_id", "experiments", "CASCADE"),
                  nullable=False),
        sa.Column("user_id", sa.Integer(), _fk("experiment_members", "user_id", "users", "CASCADE"), nullable=False),
        sa.UniqueConstraint("experiment_id", "user_id", name="uq_experiment_members_experiment_user"),
    )
    op.create_index("ix_experiment_members_experiment_id", "experiment_members", ["experiment_id"])
    op.create_index("ix_experiment_members_user_id", "experiment_members", ["user_id"])
    op.create_table(
        "experiment_environments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(),
                  _fk("experiment_environments", "experiment_id", "experiments", "CASCADE"), nullable=False),
        sa.Column("environment_id", sa.Integer(),
                  _fk("experiment_environments", "environment_id", "environments", "CASCADE"), nullable=False),
        sa.UniqueConstraint("experiment_id", "environment_id",
                            name="uq_experiment_environments_experiment_environment"),
    )
    op.create_index("ix_experiment_environments_experiment_id", "experiment_environments", ["experiment_id"])
    op.create_index("ix_experiment_environments_environment_id", "experiment_environments", ["environment_id"])
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("docker_url", sa.String(255), nullable=False),
        sa.Column("vnc_host", sa.String(255), nullable=False),
        sa.Column("tls_ca", sa.String(500), nullable=False),
        sa.Column("tls_cert", sa.String(500), nullable=False),
        sa.Column("tls_key", sa.String(500), nullable=False),
        sa.Column("tls_verify", sa.Boolean(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("max_sessions", sa.Integer(), nullable=False),
        sa.Column("port_min", sa.Integer(), nullable=False),
        sa.Column("port_max", sa.Integer(), nullable=False),
        sa.Column("gpus", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("name", name="uq_nodes_name"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), _fk("sessions", "user_id", "users", "CASCADE"), nullable=False),
        sa.Column("experiment_id", sa.Integer(), _fk("sessions", "experiment_id", "experiments", "CASCADE"),
                  nullable=False),
        sa.Column("environment_version_id", sa.Integer(),
                  _fk("sessions", "environment_version_id", "environment_versions", "RESTRICT"), nullable=False),
        sa.Column("image", sa.String(400), nullable=False),
        sa.Column("image_digest", sa.String(80), nullable=False),
        sa.Column("node_id", sa.Integer(), _fk("sessions", "node_id", "nodes", "SET NULL"), nullable=True),
        sa.Column("container_id", sa.String(80), nullable=False),
        sa.Column("container_name", sa.String(128), nullable=False),
        sa.Column("vnc_port", sa.Integer(), nullable=True),
        sa.Column("display", sa.Integer(), nullable=True),
        sa.Column("vnc_password", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("gpu", sa.Boolean(), nullable=False),
        sa.Column("gpu_uuid", sa.String(80), nullable=False),
        sa.Column("backend_state", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("stopped_at", UTCDateTime(), nullable=True),
        sa.Column("last_activity", UTCDateTime(), nullable=True),
        sa.Column("warned_at", UTCDateTime(), nullable=True),
    )
    for column in ("user_id", "experiment_id", "environment_version_id", "node_id", "state"):
        op.create_index(f"ix_sessions_{column}", "sessions", [column])
    op.create_table(
        "port_leases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("node_id", sa.Integer(), _fk("port_leases", "node_id", "nodes", "CASCADE"), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), _fk("port_leases", "session_id", "sessions", "CASCADE"), nullable=False),
        sa.UniqueConstraint("node_id", "port", name="uq_port_leases_node_port"),
        sa.UniqueConstraint("session_id", name="uq_port_leases_session_id"),
    )
    op.create_table(
        "gpu_leases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("node_id", sa.Integer(), _fk("gpu_leases", "node_id", "nodes", "CASCADE"), nullable=False),
        sa.Column("gpu_index", sa.Integer(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("session_id", sa.Integer(), _fk("gpu_leases", "session_id", "sessions", "CASCADE"), nullable=False),
        sa.UniqueConstraint("node_id", "gpu_index", "slot", name="uq_gpu_leases_node_gpu_slot"),
        sa.UniqueConstraint("session_id", name="uq_gpu_leases_session_id"),
    )


def downgrade() -> None:
    op.drop_table("gpu_leases")
    op.drop_table("port_leases")
    for column in ("user_id", "experiment_id", "environment_version_id", "node_id", "state"):
        op.drop_index(f"ix_sessions_{column}", table_name="sessions")
    op.drop_table("sessions")
    op.drop_table("nodes")
    for table, column in (("experiment_environments", "environment_id"), ("experiment_environments", "experiment_id"),
                          ("experiment_members", "user_id"), ("experiment_members", "experiment_id")):
        op.drop_index(f"ix_{table}_{column}", table_name=table)
    op.drop_table("experiment_environments")
    op.drop_table("experiment_members")
    op.drop_table("experiments")
