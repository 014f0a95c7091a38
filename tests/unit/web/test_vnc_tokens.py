"""The viewer tokens: a token opens only its user's running session, and only for a short while."""

import time

import pytest
from itsdangerous import TimestampSigner

from asci.db import session_scope
from broker.models import DesktopSession
from tests.support import stand_in_vnc
from tests.support import user_of as user
from web import vnc_proxy, vnc_tokens


@pytest.fixture
def running(settings, world):
    with session_scope(settings) as db:
        row = world["broker"].launch(db, db.merge(user(settings, world, "alice")), world["env"], "current",
                             world["e1"])
        session_id, socket_path = row.id, row.vnc_socket
    with stand_in_vnc(socket_path, 4242):  # alice's uid: what her desktop's Xvnc would be
        yield session_id, socket_path


def test_the_owner_token_resolves_to_the_sessions_locked_socket(settings, world, running):
    session_id, socket_path = running
    token = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
    assert vnc_tokens.resolve(settings, world["broker"], token) == ("unix_socket", socket_path)
    fresh = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
    assert vnc_tokens.admit(settings, world["broker"], fresh) == vnc_tokens.Admission(vnc_tokens.read_token(settings, fresh),
                                                                     socket_path, None)


def test_a_token_opens_one_websocket_once(settings, world, running):
    """A token seen (in a page, a log, a proxy) cannot be replayed: the second connection with it is refused,
    while a fresh token still opens the desktop."""
    import concurrent.futures

    session_id, socket_path = running
    token = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
    assert vnc_tokens.resolve(settings, world["broker"], token) == ("unix_socket", socket_path)
    assert vnc_tokens.resolve(settings, world["broker"], token) is None
    assert vnc_tokens.admit(settings, world["broker"], token) is None
    # eight connections racing with one fresh token: exactly one gets in
    racing = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: vnc_tokens.resolve(settings, world["broker"], racing), range(8)))
    assert answers.count(("unix_socket", socket_path)) == 1 and answers.count(None) == 7


@pytest.mark.parametrize("swap", ["symlink", "unlocked folder", "socket of the session's uid", "regular file"])
def test_a_socket_the_desktop_could_have_swapped_is_never_opened(settings, world, running, tmp_path, swap):
    """Only a socket the broker locked (root's, in a root-only folder) opens: never what a desktop left."""
    import os
    import shutil

    session_id, socket_path = running
    token = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
    folder = os.path.dirname(socket_path)
    if swap == "symlink":
        elsewhere = tmp_path / "other.sock"
        os.replace(socket_path, elsewhere)
        os.symlink(elsewhere, socket_path)
    elif swap == "unlocked folder":
        os.chown(folder, 4242, 4242)
    elif swap == "socket of the session's uid":
        os.chown(socket_path, 4242, 4242)
    else:
        os.unlink(socket_path)
        shutil.copy("/etc/hostname", socket_path)
    assert vnc_tokens.resolve(settings, world["broker"], token) is None


def test_refused_tokens(settings, world, running, monkeypatch):
    session_id, _ = running

    class plugin:  # what the viewer proxy asks of every handshake
        lookup = staticmethod(lambda token: vnc_tokens.admit(settings, world["broker"], token))

    assert plugin.lookup("") is None
    assert plugin.lookup("garbage") is None
    # another user's token for this session (even an administrator's)
    assert plugin.lookup(vnc_tokens.make_token(settings, world["ids"]["bob"], session_id)) is None
    assert plugin.lookup(vnc_tokens.make_token(settings, world["ids"]["root"], session_id)) is None
    # forged: signed with another key
    forged = TimestampSigner("not-the-key", salt=vnc_tokens.SALT).sign(
        f"{world['ids']['alice']}.{session_id}".encode()).decode()
    assert plugin.lookup(forged) is None
    # tampered: alice's token with the session id changed
    token = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
    assert plugin.lookup(token.replace(f".{session_id}.", f".{session_id + 1}.", 1)) is None
    # expired
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - 3600)
    old = vnc_tokens.make_token(settings, world["ids"]["alice"], session_id)
    monkeypatch.undo()
    assert plugin.lookup(old) is None
    # a stopped session opens nothing
    with session_scope(settings) as db:
        world["broker"].stop(db, session_id, db.merge(user(settings, world, "alice")))
    assert plugin.lookup(token) is None


def test_touch_restarts_the_idle_clock(settings, world, running):
    session_id, _ = running
    with session_scope(settings) as db:
        db.get(DesktopSession, session_id).last_activity = None
    vnc_tokens.resolve(settings, world["broker"], vnc_tokens.make_token(settings, world["ids"]["alice"], session_id))
    with session_scope(settings) as db:
        assert db.get(DesktopSession, session_id).last_activity is not None


def test_the_viewer_proxy_command_runs_the_websockify_part(settings):
    argv = vnc_proxy.command(settings)
    assert argv[-4:] == ["part", "websockify", "--port", "6080"]
    assert vnc_proxy.websocket_url(settings, "example.org", "https") == "wss://example.org:6080"
    assert vnc_proxy.websocket_url(settings.replace(websockify_url="wss://asci/vnc/"), "x", "http") == "wss://asci/vnc"


def test_the_generated_secret_key_is_private_and_the_same_for_racing_processes(settings, tmp_path, monkeypatch):
    """Two processes (web server, websockify) that both find no key file must end up with one key."""
    import stat
    from pathlib import Path

    from asci.http import secret_key

    fresh = settings.replace(data_dir=tmp_path / "fresh", secret_key="")
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if self.name == "secret_key" else real_exists(self))
    first, second = secret_key(fresh), secret_key(fresh)
    monkeypatch.undo()
    assert first == second and len(first) == 64
    key_file = tmp_path / "fresh" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["secret_key"]  # no temporary file left behind
