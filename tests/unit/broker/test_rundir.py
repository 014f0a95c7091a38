"""Session folders without Docker: ownership and modes, the lock, the peer proof, websockify's check,
the password file (byte for byte what ``vncpasswd -f`` writes), sweeping; and a launch whose socket
is served by something else fails, stops its desktop and leaves no folder."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import select

from asci.db import session_scope
from asci.rfb import vncpasswd_file
from broker import rundir
from broker.errors import BackendError, ForeignServer
from broker.models import DesktopSession
from broker.reconcile import reconcile
from tests.support import bind_unix, make_world, stand_in_vnc
from tests.support import user_of as user

NODES = [dict(name="n1", docker_url="unix:///fake1.sock", cpus=16, memory_bytes=64 << 30, max_sessions=10)]


def _mode(path) -> tuple[int, int, int]:
    info = os.lstat(path)
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def test_vncpasswd_file_is_what_vncpasswd_writes():
    # recorded with TigerVNC 1.12's `vncpasswd -f` in the debian12-mate image
    assert vncpasswd_file("ab").hex() == "f9b845297cb5d3f2"
    assert vncpasswd_file("Secr3t!x", "view0nly").hex() == "fcf3f7471c6b227dc9c15d72185498db"
    assert vncpasswd_file("Secr3t!xTOOLONG") == vncpasswd_file("Secr3t!x")  # 8 characters count
    with pytest.raises(ValueError):
        vncpasswd_file("")


def test_prepare_gives_the_session_only_what_it_needs(tmp_path):
    folder = rundir.prepare(tmp_path / "run", "asci-s1", 4242, 4343, "pw123456", "view1234", "asci-asci-s1")
    assert _mode(tmp_path / "run") == (0, 0, 0o700)
    assert _mode(folder.path) == (0, 0, 0o700)
    assert _mode(folder.vnc) == (4242, 4343, 0o700)
    assert _mode(folder.secret) == (4242, 4343, 0o500)
    assert _mode(folder.secret / "passwd") == (4242, 4343, 0o400)
    assert (folder.secret / "passwd").read_bytes() == vncpasswd_file("pw123456", "view1234")
    assert _mode(folder.hosts)[2] == 0o444 and "127.0.1.1\tasci-asci-s1" in folder.hosts.read_text()
    assert "localhost" in folder.hosts.read_text()
    # a stale folder of the same key (a crash) is replaced, never reused
    (folder.vnc / "left-over").write_text("x")
    again = rundir.prepare(tmp_path / "run", "asci-s1", 4242, 4343, "other123", "")
    assert os.listdir(again.vnc) == [] and (again.secret / "passwd").read_bytes() == vncpasswd_file("other123")


@pytest.mark.parametrize("key, hostname", [("../etc", "h"), ("a/b", "h"), ("", "h"), ("ok", "bad name"),
                                           ("ok", "-x"), ("ok", "x" * 64)])
def test_unsafe_names_are_refused(tmp_path, key, hostname):
    with pytest.raises(BackendError, match="unsafe"):
        rundir.prepare(tmp_path / "run", key, 4242, 4242, "pw123456", "", hostname)
    assert not (tmp_path / "etc").exists()


def test_hostname_for_a_container_name():
    assert rundir.hostname_for("asci-asci-s12") == "asci-asci-s12"
    assert rundir.hostname_for("asci-probe-my_env-0123456789") == "asci-probe-my-env-0123456789"
    assert len(rundir.hostname_for("x" * 200)) == 63


def test_lock_takes_the_folder_and_the_socket_from_the_session(tmp_path):
    folder = rundir.prepare(tmp_path / "run", "asci-s2", 4242, 4242, "pw123456", "")
    listener = bind_unix(folder.socket)
    os.chown(folder.socket, 4242, 4242)  # as Xvnc, running as the session's uid, makes it
    try:
        assert not rundir.is_locked(folder) and rundir.checked_socket(folder.socket) is None
        rundir.lock(folder, 4242)
        assert rundir.is_locked(folder)
        assert _mode(folder.vnc) == (0, 0, 0o700) and _mode(folder.socket)[::2] == (0, 0o600)
        assert rundir.checked_socket(folder.socket) == str(folder.socket)
    finally:
        listener.close()


@pytest.mark.parametrize("swap", ["symlink", "other uid", "regular file", "extra entry"])
def test_lock_refuses_anything_but_the_sessions_own_socket(tmp_path, swap):
    folder = rundir.prepare(tmp_path / "run", "asci-s3", 4242, 4242, "pw123456", "")
    other = rundir.prepare(tmp_path / "run", "asci-s4", 4343, 4343, "pw123456", "")
    elsewhere = bind_unix(other.socket)
    listener = None
    if swap == "symlink":
        os.symlink(other.socket, folder.socket)
    elif swap == "regular file":
        folder.socket.write_text("not a socket")
        os.chown(folder.socket, 4242, 4242)
    else:
        listener = bind_unix(folder.socket)
        os.chown(folder.socket, 4343 if swap == "other uid" else 4242, 4242)
        if swap == "extra entry":
            (folder.vnc / "second.sock").write_text("")
    try:
        with pytest.raises(ForeignServer):
            rundir.lock(folder, 4242)
        assert rundir.checked_socket(folder.socket) is None
    finally:
        elsewhere.close()
        if listener is not None:
            listener.close()


def test_the_proof_refuses_a_server_outside_the_sessions_container(tmp_path):
    folder = rundir.prepare(tmp_path / "run", "asci-s5", os.getuid(), os.getgid(), "pw123456", "")
    with stand_in_vnc(folder.socket, os.getuid()):  # served by this test process: uid right, container wrong
        with pytest.raises(ForeignServer, match="not by the session's desktop"):
            rundir.ready(folder, os.getuid(), lambda: "f" * 64)
        with pytest.raises(ForeignServer):
            rundir.prove(folder, 4242, "f" * 64)  # and the wrong uid
    with pytest.raises(BackendError, match="does not answer"):
        rundir.prove(folder, os.getuid(), "f" * 64)  # nobody listens any more


def test_not_ready_until_the_socket_appears(tmp_path):
    folder = rundir.prepare(tmp_path / "run", "asci-s6", 4242, 4242, "pw123456", "")
    asked = []
    assert rundir.ready(folder, 4242, lambda: asked.append(1) or "x") is False
    assert asked == [] and not rundir.is_locked(folder)


def test_not_ready_nor_locked_until_the_socket_is_given_its_mode_and_listens(tmp_path):
    """Xvnc binds its socket (mode 0000), chmods it, then listens. Under load (20 desktops starting at once
    on 2 CPUs) the broker met both windows: locking before the chmod made Xvnc exit ("unable to set socket
    mode"), and a connection before the listen is refused. Both are steps to wait, not failed launches."""
    import socket

    folder = rundir.prepare(tmp_path / "run", "asci-s9", 4242, 4242, "pw123456", "")
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    saved = os.umask(0o777)
    try:
        bound.bind(str(folder.socket))  # as Xvnc binds it: mode 0000, then chmod, then listen
    finally:
        os.umask(saved)
    os.chown(folder.socket, 4242, 4242)  # Xvnc runs as the session's uid
    try:
        # before the chmod the folder stays the session's: locking it then would fail Xvnc's chmod
        assert rundir.ready(folder, 4242, lambda: "f" * 64) is False and not rundir.is_locked(folder)
        os.chmod(folder.socket, 0o600)
        with pytest.raises(BackendError, match="does not answer"):
            rundir.prove(folder, 4242, "f" * 64)
        assert rundir.ready(folder, 4242, lambda: "f" * 64) is False
        assert rundir.is_locked(folder)  # locked once it had its mode; the proof follows once it listens
    finally:
        bound.close()


def test_container_of_reads_the_cgroup():
    assert rundir.container_of(os.getpid()) is None  # the test runs on the node, not in a container
    assert rundir.container_of(2**22 + 7) is None  # no such process


def test_sweep_removes_only_this_brokers_ended_sessions(tmp_path):
    run = tmp_path / "run"
    for key in ("asci-s1", "asci-s2", "asci-s10", "asci-sx-s1", "probe-abc", "other-s1"):
        rundir.prepare(run, key, 4242, 4242, "pw123456", "")
    assert rundir.sweep(run, "asci", keep={"asci-s2"}) == ["asci-s1", "asci-s10"]
    assert sorted(os.listdir(run)) == ["asci-s2", "asci-sx-s1", "other-s1", "probe-abc"]


def test_remove_for_socket_removes_only_a_session_folder(tmp_path):
    folder = rundir.prepare(tmp_path / "run", "asci-s7", 4242, 4242, "pw123456", "")
    rundir.remove_for_socket(tmp_path / "run" / "asci-s7" / "secret" / "passwd")  # not a socket path: ignored
    assert folder.path.exists()
    rundir.remove_for_socket(folder.socket)
    assert not folder.path.exists() and (tmp_path / "run").exists()


@pytest.fixture
def env(settings, make_broker):
    world = make_world(settings, NODES)
    return settings, world, make_broker


def test_a_launch_whose_socket_another_server_answers_fails_and_leaves_nothing(env):
    settings, world, make_broker = env

    def hijacked(folder, uid, container_id):
        container_id()
        raise ForeignServer(f"{folder.socket} is served by pid 1 (uid 0, container none), not by the session's desktop")

    broker = make_broker(settings, ready=hijacked)
    with session_scope(settings) as db:
        with pytest.raises(BackendError, match="not by the session's desktop"):
            broker.launch(db, db.merge(user(settings, world, "alice")), world["env"], "current", world["e1"])
        [desktop] = db.scalars(select(DesktopSession)).all()
        assert desktop.state == "failed" and "not by the session's desktop" in desktop.message
    assert broker.backend.running == {}, "the desktop must be stopped"
    assert list(settings.run_dir.iterdir()) == []


def test_reconcile_removes_the_folders_of_ended_and_unknown_sessions(env):
    settings, world, make_broker = env
    broker = make_broker(settings)
    with session_scope(settings) as db:
        alice = db.merge(user(settings, world, "alice"))
        kept = broker.launch(db, alice, world["env"], "current", world["e1"])
        ended = broker.launch(db, alice, world["env"], "current", world["e1"])
        ended.state = "stopped"  # ended behind the broker's back: its folder stayed
    stray = rundir.prepare(settings.run_dir, rundir.session_key(settings.broker_instance, 9999), 4242, 4242, "pw", "")
    foreign = rundir.prepare(settings.run_dir, "otherbroker-s1", 4242, 4242, "pw", "")
    with session_scope(settings) as db:
        assert reconcile(broker, db)["folders_removed"] == 2
    assert os.path.exists(kept.vnc_socket.rsplit("/", 2)[0])
    assert not os.path.exists(ended.vnc_socket.rsplit("/", 2)[0]) and not stray.path.exists()
    assert foreign.path.exists()


def test_a_platform_in_its_own_pid_namespace_proves_by_uid_and_lock(tmp_path):
    """Seen from a pid namespace of its own (a containerised broker), the server's pid is 0 and its
    cgroup unreadable: the uid (with the lock) is then the proof, and a wrong uid still fails."""
    import subprocess
    import sys

    from asci.config import PROJECT_ROOT
    from tests.support import require_programs

    require_programs("unshare")
    folder = rundir.prepare(tmp_path / "run", "asci-s8", os.getuid(), os.getgid(), "pw123456", "")
    script = ("import sys; from pathlib import Path; from broker import rundir; "
              "print(rundir.prove(rundir.SessionDir(Path(sys.argv[1])), int(sys.argv[2]), 'f' * 64))")
    with stand_in_vnc(folder.socket, os.getuid()):
        def prove_from_own_pid_namespace(uid):
            return subprocess.run(["unshare", "--pid", "--fork", sys.executable, "-c", script, str(folder.path),
                                   str(uid)], capture_output=True, text=True, timeout=60, cwd=str(PROJECT_ROOT))
        accepted = prove_from_own_pid_namespace(os.getuid())
        assert accepted.returncode == 0 and accepted.stdout.strip() == "0", accepted.stderr
        refused = prove_from_own_pid_namespace(4242)
        assert refused.returncode != 0 and "ForeignServer" in refused.stderr
