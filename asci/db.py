"""Database engine, sessions and the declarative base shared by every package.

The same models run on SQLite (the embedded default) and PostgreSQL. The
schema is owned by Alembic migrations in ``asci/migrations``; ``upgrade``
brings a database to the newest revision.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from sqlalchemy import DateTime, MetaData, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from asci.config import Settings, private_dir, private_file
from asci.errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base for every ASCI model."""

    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTCDateTime column")
            value = value.astimezone(dt.timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.timezone.utc)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings ASCI relies on (FKs, WAL, pool checks)."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:" and not database.startswith("file:"):
            # 0700 folder, 0600 file before SQLite first opens it (its -wal and -shm files take the
            # database file's mode): nobody else on the machine reads password hashes or tokens
            private_dir(Path(database).parent)
            private_file(Path(database))
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20)
    event.listen(engine.pool, "checkin", _checked_in)
    event.listen(engine.pool, "checkout", _ping_if_idle)
    return engine


PING_IDLE_AFTER_S = 10.0  # a pooled connection unused this long is tested before use (a busy server skips it)


def _checked_in(_dbapi_connection, record) -> None:
    record.info["asci_checked_in_at"] = time.monotonic()


def _ping_if_idle(dbapi_connection, record, _proxy) -> None:
    """``pool_pre_ping`` for connections that sat idle: a request on a busy server pays no extra round
    trip, while one that waited (the database restarted meanwhile) is replaced by a fresh connection."""
    last = record.info.get("asci_checked_in_at")
    if last is not None and time.monotonic() - last < PING_IDLE_AFTER_S:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
    except Exception as exc:  # noqa: BLE001 - any failure: the pool discards it and connects again
        raise DisconnectionError(f"pooled connection is gone: {exc}") from exc


class _Engines:
    """One shared engine per URL within a process, made once even when threads ask at the same time
    (the most recent 16 URLs; ``cache_clear`` forgets them, as tests do after recreating a schema)."""

    def __init__(self, size: int = 16) -> None:
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()
        self._size = size

    def __call__(self, url: str) -> Engine:
        engine = self._engines.get(url)
        if engine is None:
            with self._lock:
                engine = self._engines.get(url)
                if engine is None:
                    engine = make_engine(url)
                    if len(self._engines) >= self._size:
                        self._engines.pop(next(iter(self._engines)))
                    self._engines[url] = engine
        return engine

    def cache_clear(self) -> None:
        with self._lock:
            self._engines.clear()


engine_for = _Engines()


_FACTORIES: dict[Settings, sessionmaker[Session]] = {}
_FACTORIES_LOCK = threading.Lock()
MAX_FACTORIES = 64  # distinct settings objects of one process (tests make many; a server has one)


def session_factory(settings: Settings) -> sessionmaker[Session]:
    """The session factory of ``settings``: made once per settings object and process (its data
    directory prepared and every package's models mapped then), bound to the URL's shared engine.
    A request pays a dictionary look-up here, no file system call."""
    engine = engine_for(settings.effective_database_url)
    factory = _FACTORIES.get(settings)
    if factory is not None and factory.kw["bind"] is engine:
        return factory
    with _FACTORIES_LOCK:
        engine = engine_for(settings.effective_database_url)
        factory = _FACTORIES.get(settings)
        if factory is None or factory.kw["bind"] is not engine:  # new, or its engine was dropped (tests)
            import_all_models()  # relationships name classes of other packages by string
            settings.private_data_dir()
            factory = sessionmaker(engine, expire_on_commit=False)
            if len(_FACTORIES) >= MAX_FACTORIES:
                _FACTORIES.pop(next(iter(_FACTORIES)))
            _FACTORIES[settings] = factory
    return factory


@contextlib.contextmanager
def session_scope(settings: Settings) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    db = session_factory(settings)()
    try:
        yield db
        db.commit()
    except BaseException:
        db.rollback()
        raise
    finally:
        db.close()


def alembic_config(url: str):
    """The Alembic configuration for ``url``, pointing at our migrations."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> str:
    """Migrate the configured database to ``revision``; returns the new revision."""
    from alembic import command

    url = settings.effective_database_url
    try:
        command.upgrade(alembic_config(url), revision)
    except OperationalError as exc:
        raise DatabaseError(f"cannot migrate {_redacted(url)}: {exc.orig}") from None
    return current_revision(settings) or ""


def current_revision(settings: Settings) -> str | None:
    """The revision the configured database is at (None before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine_for(settings.effective_database_url).connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseError(f"cannot reach {_redacted(settings.effective_database_url)}: {exc.orig}") from None


def ping(settings: Settings) -> None:
    """Raise :class:`DatabaseError` unless the database answers a query."""
    try:
        with engine_for(settings.effective_database_url).connect() as connection:
            connection.execute(select(1))
    except OperationalError as exc:
        raise DatabaseError(f"database unreachable: {exc.orig}") from None


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


MODELS_ENTRY_POINT_GROUP = "asci.models"


@lru_cache(maxsize=1)
def import_all_models() -> None:
    """Import the core's and every package's models so that ``Base.metadata`` is complete.

    Packages register their models module under the ``asci.models`` entry point group
    (``pyproject.toml``), so the core names none of them. Done once per process: reading the
    installed distributions' entry points costs milliseconds, and every request opens a session.
    """
    from importlib.metadata import entry_points

    import asci.accounts  # noqa: F401  (the core's own tables)
    import asci.audit  # noqa: F401
    import asci.heartbeats  # noqa: F401

    for entry in entry_points(group=MODELS_ENTRY_POINT_GROUP):
        entry.load()
