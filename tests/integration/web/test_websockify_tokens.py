"""A real websockify process with the session-token plugin, in front of a stand-in VNC server on the
session's Unix socket: the owner's token is proxied to that socket, and keeps the session's idle clock
going while connected; other tokens never reach it."""

from __future__ import annotations

import datetime as dt
import socket
import time

import pytest

from asci import accounts
from asci.db import session_scope, utcnow
from broker.models import DesktopSession
from tests.support import free_port, make_world, stand_in_vnc
from tests.support import user_of as user
from web import vnc_proxy, vnc_tokens

pytestmark = [pytest.mark.integration]
GREETING = b"RFB 003.008\n"


@pytest.fixture
def proxied(settings, tmp_path, make_broker):
    settings = settings.replace(websockify_port=free_port(30000, 40000), vnc_touch_interval_s=1)
    world = make_world(settings, [dict(name="n1", docker_url="unix:///fake.sock")])
    broker = world["broker"] = make_broker(settings)
    with session_scope(settings) as db:
        row = broker.launch(db, db.merge(user(settings, world, "alice")), world["env"], "current", world["e1"])
        session_id, socket_path = row.id, row.vnc_socket
    with stand_in_vnc(socket_path, 4242, GREETING) as accepted:
        process = vnc_proxy.start(settings, log_path=tmp_path / "websockify.log")
        yield settings, world, session_id, accepted
        vnc_proxy.stop(process)
    print((tmp_path / "websockify.log").read_text(errors="replace")[-2000:])


class Refused(Exception):
    """websockify answered the upgrade with something other than 101."""


def _open(settings, token: str, hold_s: float = 0) -> bytes:
    """A WebSocket handshake with ``?token=`` (as noVNC does); the first binary message proxied back
    (the connection is held open ``hold_s`` seconds more)."""
    import base64
    import os

    with socket.create_connection(("127.0.0.1", settings.websockify_port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall((f"GET /websockify?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Protocol: binary\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                raise Refused(f"closed during the handshake: {data[:200]!r}")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise Refused(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        while len(rest) < 2 or len(rest) < 2 + (rest[1] & 0x7F):
            chunk = sock.recv(4096)
            if not chunk:
                raise Refused("closed before the VNC greeting")
            rest += chunk
        assert rest[0] & 0x0F == 0x2, "expected a binary frame"
        time.sleep(hold_s)
        return rest[2:2 + (rest[1] & 0x7F)]


def test_the_owner_token_reaches_the_vnc_server(proxied):
    settings, world, session_id, accepted = proxied
    assert _open(settings, vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)) == GREETING
    assert len(accepted) == 1


def test_a_connected_viewer_keeps_the_session_from_idling(proxied):
    """websockify's connection child tells the broker every vnc_touch_interval_s (1 s here) that the viewer
    is still there; nothing touches the session once the viewer has gone."""
    settings, world, session_id, accepted = proxied
    long_ago = utcnow() - dt.timedelta(hours=3)

    def last_activity():
        with session_scope(settings) as db:
            return db.get(DesktopSession, session_id).last_activity

    token = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
    with session_scope(settings) as db:
        db.get(DesktopSession, session_id).last_activity = long_ago
    import threading

    viewer = threading.Thread(target=_open, args=(settings, token, 4.0))
    viewer.start()
    time.sleep(1.0)
    with session_scope(settings) as db:  # the touch at connect time is past: only the heartbeat can renew it
        db.get(DesktopSession, session_id).last_activity = long_ago
    time.sleep(2.5)
    assert last_activity() > long_ago + dt.timedelta(hours=2), "no heartbeat while the viewer was connected"
    viewer.join()
    time.sleep(1.5)  # the connection's child process has ended, and its heartbeat with it
    with session_scope(settings) as db:
        db.get(DesktopSession, session_id).last_activity = long_ago
    time.sleep(2.5)
    assert last_activity() == long_ago, "the session was touched after its viewer left"


@pytest.mark.parametrize("who", ["bob", "root", "forged", "missing"])
def test_other_tokens_are_refused(proxied, who):
    settings, world, session_id, accepted = proxied
    fixed = {"forged": "1.2.3.4", "missing": ""}
    token = fixed[who] if who in fixed else vnc_tokens.make_token(settings, world["ids"][who], session_id)
    with pytest.raises(Refused):
        _open(settings, token)
    assert accepted == []


def test_a_stopped_session_cannot_be_reached(proxied):
    settings, world, session_id, accepted = proxied
    token = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
    with session_scope(settings) as db:
        world["broker"].stop(db, session_id, db.get(accounts.User, world["ids"]["alice"]))
    with pytest.raises(Refused):
        _open(settings, token)
    assert accepted == []


def test_running_wraps_the_server_lifetime(settings):
    settings = settings.replace(websockify_port=free_port(30000, 40000))
    with vnc_proxy.running(settings) as process:
        assert process.poll() is None
        with socket.create_connection(("127.0.0.1", settings.websockify_port), timeout=5):
            pass
    assert process.poll() is not None
    assert (settings.data_dir / "logs" / "websockify.log").exists()
