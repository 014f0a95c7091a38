"""rights: token scopes and expiry, account lifecycle, publisher grants, memberships bound to identities

* users: ``session_epoch`` (login cookies of an older epoch are void), ``disabled_at``,
  ``self_registered`` (created by a first single sign-on login);
* api_tokens: ``scopes``, ``expires_at``, ``revoked_at``. Tokens issued before this revision keep
  what they could do (``sessions publish:*``, administrators' also ``admin metrics``; publishing
  now needs a grant too) and expire 90 days after the upgrade;
* repo_grants: who may publish into which repository;
* experiment_pending_members: memberships granted to a sign-on identity (subject or e-mail) that
  has no account yet.

Revision ID: 0010_rights
Revises: 0009_capacity
"""
import datetime as dt

import sqlalchemy as sa
from alembic import op

from asci.db import UTCDateTime

revision = "0010_rights"
down_revision = "0009_capacity"
branch_labels = None
depends_on = None

LEGACY_TOKEN_DAYS = 90


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        # a plain "0" (not sa.false()): SQLite then adds the column in place instead of rebuilding the table
        batch.add_column(sa.Column("self_registered", sa.Boolean(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("session_epoch", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("disabled_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("scopes", sa.String(500), nullable=False, server_default="sessions"))
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("revoked_at", UTCDateTime(), nullable=True))

    tokens = sa.table("api_tokens", sa.column("user_id", sa.Integer()), sa.column("scopes", sa.String()),
                      sa.column("expires_at", UTCDateTime()))
    users = sa.table("users", sa.column("id", sa.Integer()), sa.column("is_admin", sa.Boolean()))
    admins = sa.select(users.c.id).where(users.c.is_admin.is_(True)).scalar_subquery()
    expiry = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=LEGACY_TOKEN_DAYS)
    op.execute(tokens.update().values(scopes="sessions publish:*", expires_at=expiry))
    op.execute(tokens.update().where(tokens.c.user_id.in_(admins)).values(scopes="sessions admin metrics publish:*"))

    op.create_table(
        "repo_grants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("repo", sa.String(64), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE",
                                                         name="fk_repo_grants_user_id_users"), nullable=False),
        sa.Column("granted_by_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL",
                                                               name="fk_repo_grants_granted_by_id_users"),
                  nullable=True),
        sa.Column("granted_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("repo", "user_id", name="uq_repo_grants_repo_user"),
    )
    op.create_index("ix_repo_grants_user_id", "repo_grants", ["user_id"])
    op.create_table(
        "experiment_pending_members",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("experiment_id", sa.Integer(),
                  sa.ForeignKey("experiments.id", ondelete="CASCADE",
                                name="fk_experiment_pending_members_experiment_id_experiments"), nullable=False),
        sa.Column("external_id", sa.String(400), nullable=True),
        sa.Column("email", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("experiment_id", "external_id", name="uq_experiment_pending_members_identity"),
        sa.UniqueConstraint("experiment_id", "email", name="uq_experiment_pending_members_email"),
    )
    op.create_index("ix_experiment_pending_members_experiment_id", "experiment_pending_members", ["experiment_id"])


def downgrade() -> None:
    op.drop_index("ix_experiment_pending_members_experiment_id", table_name="experiment_pending_members")
    op.drop_table("experiment_pending_members")
    op.drop_index("ix_repo_grants_user_id", table_name="repo_grants")
    op.drop_table("repo_grants")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("revoked_at")
        batch.drop_column("expires_at")
        batch.drop_column("scopes")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("disabled_at")
        batch.drop_column("session_epoch")
        batch.drop_column("self_registered")
