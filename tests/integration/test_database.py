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
    """0010_rights: a token of an administrator keeps the administrators' API, every token may still
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


def test_desktop_isolation_applies_after_capacity_and_rights_and_keeps_sessions(db_settings):
    """0012_desktop_isolation comes after 0008 to 0011 (heartbeats, capacity, rights, layers): from a database at 0011_layers
    with a node, a running session holding a port and a GPU slot, it drops the port leases and the nodes'
    and sessions' port columns and keeps every other row and column, capacity and guarantees included;
    the table rebuilds on SQLite do not cascade into sessions or GPU leases. Down and up again works."""
    from alembic import command
    from sqlalchemy import text

    from broker.models import DesktopSession, Experiment, GpuLease, Node
    from builder.models import EnvironmentVersion
    from tests.support import make_world

    url = db_settings.effective_database_url
    world = make_world(db_settings, [dict(name="n1", docker_url="unix:///n1.sock", cpus=16, memory_bytes=64 << 30,
                                          reserve_cpus=0.5, cpu_overcommit=4.0, capacity_source="engine",
                                          nvidia_smi="a100x2.csv")])
    with db.session_scope(db_settings) as session:
        node = session.scalar(select(Node))
        experiment = session.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        version = session.scalar(select(EnvironmentVersion).where(EnvironmentVersion.version == "v1"))
        desktop = DesktopSession(user_id=world["ids"]["alice"], experiment_id=experiment.id,
                                 environment_version_id=version.id,
                                 environment=world["env"], version="v1", image="r/e@sha256:" + "0" * 64,
                                 node_id=node.id, vnc_password="pw123456", vnc_view_password="view1234",
                                 vnc_socket="/run/x/vnc/vnc.sock", state="running", cpus=2.0, memory_bytes=4 << 30,
                                 cpu_guarantee=0.5, memory_guarantee_bytes=1 << 30, gpu=True, gpu_uuid=node.gpus[0]["uuid"],
                                 backend_state={"container_id": "c1"})
        session.add(desktop)
        session.flush()
        session.add(GpuLease(node_id=node.id, gpu_index=0, slot=0, session_id=desktop.id))
        node_id, session_id = node.id, desktop.id
    command.downgrade(db.alembic_config(url), "0011_layers")
    assert db.current_revision(db_settings) == "0011_layers"
    with db.engine_for(url).begin() as connection:
        assert connection.execute(text("SELECT port_min, port_max, vnc_host FROM nodes")).one() == (5901, 5999,
                                                                                                    "127.0.0.1")
        connection.execute(text("UPDATE sessions SET vnc_port = 5901, display = 1"))
        connection.execute(text("INSERT INTO port_leases (node_id, port, session_id) VALUES (:n, 5901, :s)"),
                           {"n": node_id, "s": session_id})
    db.upgrade(db_settings)
    assert "port_leases" not in inspect(db.engine_for(url)).get_table_names()
    node_columns = {column["name"] for column in inspect(db.engine_for(url)).get_columns("nodes")}
    session_columns = {column["name"] for column in inspect(db.engine_for(url)).get_columns("sessions")}
    assert not {"port_min", "port_max", "vnc_host"} & node_columns and not {"vnc_port", "display"} & session_columns
    with db.session_scope(db_settings) as session:
        node = session.get(Node, node_id)
        assert (node.cpus, node.reserve_cpus, node.cpu_overcommit, node.capacity_source) == (16, 0.5, 4.0, "engine")
        desktop = session.get(DesktopSession, session_id)
        assert (desktop.state, desktop.node_id, desktop.cpu_guarantee, desktop.memory_guarantee_bytes) == (
            "running", node_id, 0.5, 1 << 30)
        assert desktop.vnc_view_password == "" and desktop.vnc_password == "pw123456"  # added anew, empty
        assert [lease.session_id for lease in session.scalars(select(GpuLease))] == [session_id]


# the revision ids before the files were renumbered in chain order, oldest first, with their new ids
OLD_REVISIONS = [("0012_heartbeats", "0008_heartbeats"), ("0010_capacity", "0009_capacity"),
                 ("0009_rights", "0010_rights"), ("0013_layers", "0011_layers"),
                 ("0008_desktop_isolation", "0012_desktop_isolation"), ("0014_sharing", "0013_sharing")]


def _schema(url: str) -> dict:
    inspector = inspect(db.engine_for(url))
    return {table: sorted(column["name"] for column in inspector.get_columns(table))
            for table in inspector.get_table_names()}


@pytest.mark.parametrize("old, new", OLD_REVISIONS, ids=[old for old, _ in OLD_REVISIONS])
def test_a_database_stamped_with_an_old_revision_id_upgrades_to_the_head(db_settings, old, new):
    """A database migrated before the renumbering carries the old id of the migration it is at (the
    schema is the same): ``upgrade`` restamps it with the new id and applies only what comes after,
    its rows kept. ``0014_sharing`` is the head every database had before the renumbering."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from sqlalchemy import text

    url = db_settings.effective_database_url
    config = db.alembic_config(url)
    head = ScriptDirectory.from_config(config).get_current_head()
    at_head = _schema(url)
    with db.session_scope(db_settings) as session:
        accounts.create_user(session, "alice", "correct horse")
    command.downgrade(config, new)
    with db.engine_for(url).begin() as connection:  # what the old chain left: the same schema, the old id
        connection.execute(text("UPDATE alembic_version SET version_num = :old"), {"old": old})
    assert db.current_revision(db_settings) == old
    assert db.upgrade(db_settings) == head
    assert _schema(url) == at_head
    with db.session_scope(db_settings) as session:
        assert accounts.get_user(session, "alice") is not None


def test_the_renamed_files_follow_the_chain():
    """Each migration file is named after its revision and revises the file numbered one below it."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(db.alembic_config("sqlite://"))
    chain = list(reversed(list(scripts.walk_revisions())))
    for number, script in enumerate(chain, start=1):
        assert script.revision.startswith(f"{number:04d}_"), script.revision
        assert script.path.endswith(f"/{script.revision}.py")
        assert script.down_revision == (chain[number - 2].revision if number > 1 else None)
