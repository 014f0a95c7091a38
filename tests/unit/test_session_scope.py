"""The request path's database session: set-up once per settings object, nothing per request."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from sqlalchemy import select

from asci import db
from asci.config import Settings


def _count_calls(monkeypatch) -> dict[str, int]:
    """Count mkdir, chmod and stat of Path (what preparing the data directory does)."""
    counts = {"mkdir": 0, "chmod": 0, "stat": 0, "sessionmaker": 0}
    for name in ("mkdir", "chmod", "stat"):
        original = getattr(Path, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(Path, name, counted)
    original_maker = db.sessionmaker

    def counted_maker(*args, **kwargs):
        counts["sessionmaker"] += 1
        return original_maker(*args, **kwargs)

    monkeypatch.setattr(db, "sessionmaker", counted_maker)
    return counts


def test_a_second_session_scope_prepares_nothing_again(tmp_path, monkeypatch):
    settings = Settings(data_dir=tmp_path / "data")
    db.upgrade(settings)
    counts = _count_calls(monkeypatch)
    with db.session_scope(settings) as session:
        session.execute(select(1))
    first = dict(counts)
    assert first["sessionmaker"] == 1 and first["mkdir"] >= 1  # the first one prepares the data directory
    factory = db.session_factory(settings)
    for _ in range(5):
        with db.session_scope(settings) as session:
            session.execute(select(1))
    assert counts == first, "a later session_scope touched the file system or built a sessionmaker"
    assert db.session_factory(settings) is factory
    # an equal settings object (read again from the same values) shares the factory too
    assert db.session_factory(settings.replace()) is factory


def test_the_data_directory_is_still_made_private_the_first_time(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    settings = Settings(data_dir=folder, database_url="sqlite:///" + str(tmp_path / "elsewhere.db"))
    db.upgrade(settings)
    with db.session_scope(settings):
        pass
    assert os.stat(folder).st_mode & 0o777 == 0o700


def test_other_settings_get_their_own_factory_and_a_dropped_engine_is_not_reused(tmp_path):
    one, two = Settings(data_dir=tmp_path / "one"), Settings(data_dir=tmp_path / "two")
    assert db.session_factory(one) is not db.session_factory(two)
    assert db.session_factory(one).kw["bind"] is db.engine_for(one.effective_database_url)
    old = db.session_factory(one)
    db.engine_for.cache_clear()  # what tests/support.reset_postgres does after recreating a schema
    fresh = db.session_factory(one)
    assert fresh is not old and fresh.kw["bind"] is db.engine_for(one.effective_database_url)


def test_concurrent_first_requests_build_one_factory(tmp_path):
    settings = Settings(data_dir=tmp_path / "data")
    seen, start = [], threading.Barrier(8)

    def first_request():
        start.wait()
        seen.append(db.session_factory(settings))

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(factory) for factory in seen}) == 1


def test_the_factory_cache_is_bounded(tmp_path):
    for index in range(db.MAX_FACTORIES + 5):
        db.session_factory(Settings(data_dir=tmp_path / f"d{index}"))
    assert len(db._FACTORIES) <= db.MAX_FACTORIES


@pytest.mark.postgres
def test_a_busy_pool_pays_no_ping_and_an_idle_connection_that_died_is_replaced(pg_settings, monkeypatch):
    """No ``SELECT 1`` before each request while connections are in use; one that sat idle is tested first,
    and a connection the server ended meanwhile is replaced rather than failing the request."""
    from sqlalchemy import event, text

    from asci import db as asci_db

    engine = asci_db.engine_for(pg_settings.effective_database_url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with asci_db.session_scope(pg_settings) as db:
        backend_pid = db.execute(text("SELECT pg_backend_pid()")).scalar()
    for _ in range(3):
        with asci_db.session_scope(pg_settings) as db:
            db.execute(text("SELECT 2"))
    assert "SELECT 1" not in statements  # checkout of a connection just checked in: no ping
    monkeypatch.setattr(asci_db, "PING_IDLE_AFTER_S", 0.0)  # every pooled connection now counts as idle
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    other = create_engine(pg_settings.effective_database_url, poolclass=NullPool)  # not the pool under test
    with other.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend_pid}).scalar()
    other.dispose()
    with asci_db.session_scope(pg_settings) as db:  # the terminated connection is found out and replaced
        assert db.execute(text("SELECT 3")).scalar() == 3
