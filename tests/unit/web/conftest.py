"""A web app on SQLite with the broker's fake backend and a small world: alice and bob (members), root (admin)."""

from __future__ import annotations

import re

import pytest

from asci import accounts
from asci.db import session_scope
from broker import service
from tests.unit.broker.fakes import FakeBackend, always_ready, make_world
from web import create_app

PASSWORD = "correct-horse-1"
NODES = [dict(name="n1", docker_url="unix:///fake1.sock", port_min=6001, port_max=6010, cpus=16,
              memory_bytes=64 << 30, max_sessions=10)]


@pytest.fixture
def world(settings):
    world = make_world(settings, NODES)
    with session_scope(settings) as db:
        for who in ("alice", "bob", "root"):
            db.get(accounts.User, world["ids"][who]).set_password(PASSWORD)
    backend = FakeBackend()
    service.install(settings, service.Broker(settings, backend, ready=always_ready))
    world["backend"] = backend
    yield world
    service.install(settings, None)


@pytest.fixture
def app(settings, world):
    return create_app(settings, {"TESTING": True})


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD):
    token = csrf_of(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token})


@pytest.fixture
def as_user(app, world):
    """``as_user("alice")``: a test client logged in as that user of the world."""
    def make(who: str):
        client = app.test_client()
        reply = login(client, world["names"][who])
        assert reply.status_code == 302, reply.get_data(as_text=True)
        return client
    return make
