"""The viewer proxy in one event loop: relays a token's session both ways, refuses other handshakes, closes a
viewer that falls behind (without buffering for it) and one its token no longer admits, holds many viewers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from asci import accounts
from asci.db import session_scope
from broker import service
from tests.support import free_port, stand_in_vnc
from tests.support import user_of as user
from web import vnc_tokens
from web.viewer_proxy import CLOSE_REVOKED, ViewerProxy

GREETING = b"RFB 003.008\n"


@pytest.fixture
def desktop(settings, world):
    with session_scope(settings) as db:
        row = service.launch(settings, db, db.merge(user(settings, world, "alice")), world["env"], "current",
                             world["e1"])
        session_id, socket_path = row.id, row.vnc_socket
    with stand_in_vnc(socket_path, 4242, GREETING) as accepted:
        yield session_id, accepted


@pytest.fixture
def proxy(settings):
    """A ViewerProxy on a free port, its event loop in a thread of its own (as in ``asci part websockify``)."""
    settings = settings.replace(viewer_check_interval_s=1, vnc_touch_interval_s=1)
    port = free_port(31000, 39000)
    viewer_proxy = ViewerProxy(settings, send_timeout_s=1.0, write_limit=64 * 1024)
    ready, holder = threading.Event(), {}

    def run() -> None:
        async def main() -> None:
            holder["loop"], holder["stop"] = asyncio.get_running_loop(), asyncio.Event()
            started = asyncio.Event()
            serving = asyncio.create_task(viewer_proxy.serve("127.0.0.1", port, holder["stop"], started))
            await started.wait()
            ready.set()
            await serving

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    yield settings, f"ws://127.0.0.1:{port}/websockify?token=", viewer_proxy
    holder["loop"].call_soon_threadsafe(holder["stop"].set)
    thread.join(10)
    assert not thread.is_alive()


def _token(settings, world, who, session_id) -> str:
    return vnc_tokens.make_token(settings, world["ids"][who], session_id)


def test_the_token_opens_its_session_both_ways_and_is_listed_as_connected(proxy, world, desktop):
    settings, url, viewer_proxy = proxy
    session_id, accepted = desktop
    with connect(url + _token(settings, world, "alice", session_id), subprotocols=["binary"]) as ws:
        assert ws.recv(timeout=5) == GREETING
        ws.send(b"RFB 003.008\n")
        accepted[0].settimeout(5)
        assert accepted[0].recv(100) == b"RFB 003.008\n"
        assert ws.subprotocol == "binary"
        with session_scope(settings) as db:
            from broker.models import ViewerConnection

            rows = db.query(ViewerConnection).filter_by(session_id=session_id, ended_at=None).all()
            assert [row.user_id for row in rows] == [world["ids"]["alice"]]
    deadline = time.monotonic() + 5
    while viewer_proxy.viewers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not viewer_proxy.viewers  # the viewer left: nothing of it is held
    with session_scope(settings) as db:
        assert db.query(ViewerConnection).filter_by(session_id=session_id, ended_at=None).count() == 0


@pytest.mark.parametrize("who", ["bob", "root", "garbage"])
def test_a_token_that_admits_nothing_is_refused_at_the_handshake(proxy, world, desktop, who):
    settings, url, viewer_proxy = proxy
    session_id, accepted = desktop
    token = "garbage" if who == "garbage" else _token(settings, world, who, session_id)
    with pytest.raises(InvalidStatus) as refused:
        connect(url + token)
    assert refused.value.response.status_code == 403
    assert accepted == [] and viewer_proxy.stats.refused == 1


def test_a_stalled_viewer_is_closed_and_never_buffered_for(proxy, world, desktop):
    """The desktop floods, the viewer reads nothing: the proxy stops reading from the desktop (so what it
    took in stays within socket buffers and its write limit) and closes the viewer after send_timeout_s."""
    settings, url, viewer_proxy = proxy
    session_id, accepted = desktop
    ws = connect(url + _token(settings, world, "alice", session_id), max_queue=2)
    try:
        deadline = time.monotonic() + 5
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        server = accepted[0]
        server.settimeout(0.5)
        sent, block = 0, b"\xab" * 65536
        flood_until = time.monotonic() + 8
        while sent < 256 << 20 and time.monotonic() < flood_until:
            try:
                sent += server.send(block)
            except socket.timeout:
                if viewer_proxy.stats.closed_slow:
                    break
            except OSError:  # the proxy closed its side: the viewer was cut off
                break
        assert viewer_proxy.stats.closed_slow == 1
        assert sent < 48 << 20, f"the proxy took {sent >> 20} MiB from the desktop for a viewer that reads nothing"
    finally:
        ws.close_socket() if hasattr(ws, "close_socket") else ws.socket.close()
    deadline = time.monotonic() + 10
    while viewer_proxy.viewers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not viewer_proxy.viewers


def test_a_viewer_whose_owner_is_disabled_is_closed_within_the_check_interval(proxy, world, desktop):
    settings, url, viewer_proxy = proxy
    session_id, _ = desktop
    with connect(url + _token(settings, world, "alice", session_id)) as ws:
        assert ws.recv(timeout=5) == GREETING
        with session_scope(settings) as db:
            db.get(accounts.User, world["ids"]["alice"]).is_active = False
        began = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert time.monotonic() - began < 4
        assert closed.value.rcvd.code == CLOSE_REVOKED
    assert viewer_proxy.stats.closed_revoked == 1


def test_one_process_holds_many_viewers(proxy, world, desktop):
    settings, url, viewer_proxy = proxy
    session_id, accepted = desktop
    viewers = [connect(url + _token(settings, world, "alice", session_id)) for _ in range(60)]
    try:
        assert all(ws.recv(timeout=10) == GREETING for ws in viewers)
        assert len(viewer_proxy.viewers) == 60 and len(accepted) == 60
    finally:
        for ws in viewers:
            ws.close()
