"""The session list: keyset pages through the API and the pages, one query however many rows."""

from __future__ import annotations

import pytest
from sqlalchemy import event, select

from asci import db as asci_db
from asci.db import session_scope
from broker import list_sessions, session_dict, session_page
from broker.models import DesktopSession, Experiment, Node
from builder.models import EnvironmentVersion
from tests.support import login, make_world
from tests.support import user_of as user
from web import create_app

NODES = [dict(name="n1", docker_url="unix:///fake1.sock", cpus=16, memory_bytes=64 << 30)]


def add_sessions(settings, world, who: str, count: int, state: str = "stopped") -> None:
    """``count`` session rows of ``who`` straight into the database (what a year of use leaves)."""
    with session_scope(settings) as db:
        version = db.scalar(select(EnvironmentVersion).where(EnvironmentVersion.version == "v1"))
        experiment = db.scalar(select(Experiment).where(Experiment.code == world["e1"]))
        node = db.scalar(select(Node))
        db.add_all([DesktopSession(user_id=world["ids"][who], experiment_id=experiment.id,
                                   environment_version_id=version.id, environment=world["env"], version="v1",
                                   image="img", image_digest="sha256:0", node_id=node.id, state=state,
                                   backend_state={}) for _ in range(count)])


@pytest.fixture
def listing(db_settings, make_broker):
    world = make_world(db_settings, NODES)
    broker = make_broker(db_settings)
    add_sessions(db_settings, world, "alice", 250)
    add_sessions(db_settings, world, "bob", 20)
    return db_settings, world, create_app(db_settings, broker=broker).test_client()


def _auth(world, who):
    return {"Authorization": f"Bearer {world['tokens'][who]}"}


def test_pages_walk_every_session_once_newest_first(listing):
    settings, world, client = listing
    seen, after, pages = [], None, 0
    while True:
        reply = client.get("/api/sessions", query_string={"limit": 100, **({"after": after} if after else {})},
                           headers=_auth(world, "alice"))
        assert reply.status_code == 200
        seen += [row["id"] for row in reply.json["sessions"]]
        pages += 1
        after = reply.json["next"]
        if after is None:
            break
    assert pages == 3 and len(seen) == len(set(seen)) == 250 and seen == sorted(seen, reverse=True)
    assert {row["user"] for row in client.get("/api/sessions", headers=_auth(world, "alice")).json["sessions"]} == {
        world["names"]["alice"]}
    default = client.get("/api/sessions", headers=_auth(world, "alice")).json
    assert len(default["sessions"]) == 100 and default["next"] == str(seen[99])
    everyone = client.get("/api/sessions?all=1&limit=1000", headers=_auth(world, "root")).json
    assert len(everyone["sessions"]) == 270 and everyone["next"] is None
    for bad in ("limit=0", "limit=1001", "limit=x", "after=-1", "after=1e3"):
        reply = client.get(f"/api/sessions?{bad}", headers=_auth(world, "alice"))
        assert reply.status_code == 400 and reply.json["kind"] == "BadRequest", bad


def test_a_page_is_one_query_however_many_rows(listing):
    settings, world, client = listing
    engine = asci_db.engine_for(settings.effective_database_url)
    statements = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    with session_scope(settings) as db:
        alice = db.merge(user(settings, world, "alice"))
        event.listen(engine, "before_cursor_execute", count)
        try:
            for limit in (10, 250):
                statements.clear()
                page = session_page(db, alice, limit=limit)
                shapes = [(row["user"], row["experiment"], row["node"]) for row in page.sessions]
                assert len(shapes) == limit and len(statements) == 1, statements
                assert set(shapes) == {(world["names"]["alice"], world["e1"], "n1")}
        finally:
            event.remove(engine, "before_cursor_execute", count)


def test_the_listed_shape_is_the_session_shape(listing):
    settings, world, client = listing
    with session_scope(settings) as db:
        alice = db.merge(user(settings, world, "alice"))
        listed = session_page(db, alice, limit=5).sessions
        assert listed == [session_dict(row) for row in list_sessions(db, alice, limit=5)]
        assert listed[0]["created_at"].endswith("+00:00")


def test_my_sessions_and_the_admin_list_paginate(listing):
    settings, world, client = listing
    app = create_app(settings)
    browser = app.test_client()
    login(browser, world["names"]["alice"])
    first = browser.get("/sessions").get_data(as_text=True)
    assert first.count("data-session=") == 50 and 'id="older-page"' in first and 'id="newest-page"' not in first
    ids, page, pages = [], first, 1
    while 'id="older-page"' in page:
        link = page.split('id="older-page" href="')[1].split('"')[0]
        ids += [int(chunk.split('"')[0]) for chunk in page.split('data-session="')[1:]]
        page = browser.get(link.replace("&amp;", "&")).get_data(as_text=True)
        pages += 1
    ids += [int(chunk.split('"')[0]) for chunk in page.split('data-session="')[1:]]
    assert pages == 5 and len(set(ids)) == 250 and 'id="newest-page"' in page
    admin = app.test_client()
    login(admin, world["names"]["root"])
    listing_page = admin.get("/admin/sessions").get_data(as_text=True)
    assert listing_page.count("data-session=") == 50 and 'id="older-page"' in listing_page
    assert browser.get("/admin/sessions").status_code == 403


def test_a_request_builds_no_statement_once_warm(listing, monkeypatch):
    """The token look-up and the list query of each shape are built once (their values are bound
    parameters): once warm, ``GET /api/sessions`` answers with statement building switched off, and
    still gives each caller their own rows."""
    import asci.accounts
    import broker.views

    settings, world, client = listing
    for who, query in (("alice", ""), ("bob", ""), ("alice", "?after=1000000"), ("root", "?all=1")):
        assert client.get(f"/api/sessions{query}", headers=_auth(world, who)).status_code == 200

    def no_building(*args, **kwargs):
        raise AssertionError("a statement was built for a request")

    monkeypatch.setattr(broker.views, "select", no_building)
    monkeypatch.setattr(asci.accounts, "select", no_building)
    bob = client.get("/api/sessions", headers=_auth(world, "bob")).json
    assert len(bob["sessions"]) == 20 and {row["user"] for row in bob["sessions"]} == {world["names"]["bob"]}
    alice = client.get("/api/sessions?limit=7", headers=_auth(world, "alice")).json
    assert len(alice["sessions"]) == 7 and {row["user"] for row in alice["sessions"]} == {world["names"]["alice"]}
    older = client.get(f"/api/sessions?after={alice['next']}&limit=3", headers=_auth(world, "alice")).json
    assert [row["id"] for row in older["sessions"]] == sorted((row["id"] for row in older["sessions"]), reverse=True)
    assert max(row["id"] for row in older["sessions"]) < int(alice["next"])
    assert len(client.get("/api/sessions?all=1&limit=1000", headers=_auth(world, "root")).json["sessions"]) == 270
