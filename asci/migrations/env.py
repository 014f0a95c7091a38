"""Alembic environment: runs ASCI migrations against the configured URL.

The migration files were renumbered to follow their chain (``0012_heartbeats`` became
``0008_heartbeats``, and so on); a database stamped with an old revision id is restamped with the
new id first (:data:`RENAMED_REVISIONS`), so it upgrades as if it had always carried it.
"""

from alembic import context
from sqlalchemy import inspect, text

from asci.db import Base, import_all_models, make_engine

import_all_models()
target_metadata = Base.metadata


# old revision id -> the same migration's id since the files follow the chain
RENAMED_REVISIONS = {
    "0012_heartbeats": "0008_heartbeats",
    "0010_capacity": "0009_capacity",
    "0009_rights": "0010_rights",
    "0013_layers": "0011_layers",
    "0008_desktop_isolation": "0012_desktop_isolation",
    "0014_sharing": "0013_sharing",
}


def restamp_renamed_revisions(connection) -> None:
    """Replace an old revision id in ``alembic_version`` by its new one (and commit); nothing else changes."""
    if inspect(connection).has_table("alembic_version"):
        for old, new in RENAMED_REVISIONS.items():
            connection.execute(text("UPDATE alembic_version SET version_num = :new WHERE version_num = :old"),
                               {"old": old, "new": new})
    connection.commit()  # Alembic must begin its own transaction, not join this one


def run_migrations_offline() -> None:
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # Batch migrations rebuild a table (copy, DROP, rename); with foreign keys on, dropping
            # ``users`` would cascade and delete every token, session and membership. Off for the
            # migration only (it must be set outside a transaction: first thing on the connection).
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # end the transaction SQLAlchemy began, so Alembic's own commits
        restamp_renamed_revisions(connection)
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
