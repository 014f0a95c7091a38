"""A web app on SQLite with the broker's fake backend and a small world: alice and bob (members), root (admin)."""

from __future__ import annotations

import pytest

from tests.support import login, make_world
from web import create_app

NODES = [dict(name="n1", docker_url="unix:///fake1.sock", cpus=16,
              memory_bytes=64 << 30, max_sessions=10)]


@pytest.fixture
def world(settings, make_broker):
    world = make_world(settings, NODES)
    world["broker"] = make_broker(settings)
    world["backend"] = world["broker"].backend
    return world


@pytest.fixture
def app(settings, world):
    return create_app(settings, {"TESTING": True}, broker=world["broker"])


@pytest.fixture
def as_user(app, world):
    """``as_user("alice")``: a test client logged in as that user of the world."""
    def make(who: str):
        client = app.test_client()
        reply = login(client, world["names"][who])
        assert reply.status_code == 302, reply.get_data(as_text=True)
        return client
    return make
