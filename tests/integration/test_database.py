"""The same models and migrations on SQLite and on the real PostgreSQL server."""

import pytest
from sqlalchemy import inspect, select

from asci import accounts, db


def test_upgrade_creates_the_schema_at_head(db_settings):
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(db.alembic_config(db_settings.effective_database_url)).get_current_head()
    assert db.current_revision(db_settings) == head
    tables = set(inspect(db.engine_for(db_settings.effective_database_url)).get_table_names())
    assert {"users", "api_tokens", "alembic_version"} <= tables


def test_users_and_tokens_round_trip(db_settings):
    with db.session_scope(db_settings) as session:
        user = accounts.create_user(session, "alice", "correct horse", is_admin=True, uid=4242, gid=4242)
        token = accounts.issue_token(session, user, "laptop")
    with db.session_scope(db_settings) as session:
        found = accounts.user_for_token(session, token)
        assert found is not None and found.username == "alice" and found.uid == 4242
        assert found.check_password("correct horse") and not found.check_password("wrong")
        assert found.password_hash != "correct horse"
        assert accounts.user_for_token(session, token + "x") is None
        assert found.created_at.tzinfo is not None


def test_a_failed_transaction_leaves_no_row(db_settings):
    with pytest.raises(accounts.AccountError):
        with db.session_scope(db_settings) as session:
            accounts.create_user(session, "bob", "long enough")
            accounts.create_user(session, "bob", "long enough")
    with db.session_scope(db_settings) as session:
        assert session.scalar(select(accounts.User).where(accounts.User.username == "bob")) is None


def test_upgrade_is_idempotent_and_reversible(db_settings):
    head = db.current_revision(db_settings)
    assert db.upgrade(db_settings) == head
    from alembic import command

    command.downgrade(db.alembic_config(db_settings.effective_database_url), "base")
    assert db.current_revision(db_settings) is None
    assert db.upgrade(db_settings) == head


def test_an_unreachable_database_is_one_clear_error(tmp_path):
    from asci.config import Settings
    from asci.errors import DatabaseError

    settings = Settings(data_dir=tmp_path, database_url="postgresql://nobody:x@127.0.0.1:1/none")
    with pytest.raises(DatabaseError, match="cannot reach"):
        db.current_revision(settings)


def test_models_match_the_migrations(db_settings):
    """Autogenerate finds nothing to do: every model change came with its migration."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db.import_all_models()
    with db.engine_for(db_settings.effective_database_url).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        differences = compare_metadata(context, db.Base.metadata)
    assert differences == []


def test_tokens_issued_before_scopes_keep_what_they_could_do_and_expire(db_settings):
    """0009_rights: a token of an administrator keeps the administrators' API, every token may still
    publish (where its user holds a grant), and all of them expire 90 days after the upgrade. From
    0005 on, so that the rebuilds of ``users`` on SQLite (0006) are crossed too: they must not
    cascade into the tokens."""
    import datetime as dt

    from alembic import command
    from sqlalchemy import text

    url = db_settings.effective_database_url
    command.downgrade(db.alembic_config(url), "0005_ci")
    now = dt.datetime.now(dt.timezone.utc)
    with db.engine_for(url).begin() as connection:
        for user_id, name, admin in ((1, "root", True), (2, "alice", False)):
            connection.execute(text("INSERT INTO users (id, username, display_name, email, is_admin, is_active, "
                                    "created_at) VALUES (:id, :name, :name, '', :admin, :active, :now)"),
                               {"id": user_id, "name": name, "admin": admin, "active": True, "now": now})
            connection.execute(text("INSERT INTO api_tokens (user_id, name, token_sha256, created_at) "
                                    "VALUES (:id, 'old', :digest, :now)"), {"id": user_id, "digest": f"{user_id:064d}",
                                                                          "now": now})
    db.upgrade(db_settings)
    with db.session_scope(db_settings) as session:
        tokens = {row.user.username: row for row in accounts.list_tokens(session)}
        assert tokens["root"].scope_list == ["sessions", "admin", "metrics", "publish:*"]
        assert tokens["alice"].scope_list == ["sessions", "publish:*"]
        for row in tokens.values():
            assert dt.timedelta(days=89) < row.expires_at - now < dt.timedelta(days=91)
        assert accounts.get_user(session, "alice").session_epoch == 0
