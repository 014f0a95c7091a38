"""A debian12-mate desktop really runs as the broker starts it: no network, VNC only on the session's
Unix socket, the password from a vncpasswd file (never the environment), no_new_privs everywhere,
and no lock-out by bad passwords."""

import os
import time
import uuid

import pytest

from asci import rfb
from broker import rundir
from tests.support import TEST_LABEL

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def run_dir(tmp_path):
    return tmp_path / "run"


def _start(docker_client, image, folder, user="4242:4242", environment=None, **extra):
    from docker.types import Mount

    mounts = [Mount(target=rundir.CONTAINER_VNC_DIR, source=str(folder.vnc), type="bind"),
              Mount(target=rundir.CONTAINER_SECRET_DIR, source=str(folder.secret), type="bind", read_only=True)]
    return docker_client.containers.run(image, detach=True, network_disabled=True, environment=environment or {},
                                        labels={TEST_LABEL: "1"}, mounts=mounts, user=user, **extra)


def _wait_locked(folder, uid, container, timeout=60):
    """What the broker does: wait for the socket, lock the folder, prove the server is the container's."""
    deadline = time.monotonic() + timeout
    while not rundir.ready(folder, uid, lambda: container.id):
        container.reload()
        assert container.status == "running", container.logs(tail=30).decode(errors="replace")
        assert time.monotonic() < deadline, "the desktop's socket never appeared"
        time.sleep(0.05)


def _process_status(container) -> dict[str, tuple[str, str]]:
    """``{pid: (uid, NoNewPrivs)}`` of the container's own processes (not the exec'd reader)."""
    script = ("for d in /proc/[0-9]*; do c=$(cat $d/comm 2>/dev/null) || continue; "
              "case $c in sh|cat|awk) continue;; esac; "
              "s=$(awk '/^Uid:/{u=$2} /^NoNewPrivs:/{n=$2} END{print u, n}' $d/status 2>/dev/null) || continue; "
              "echo \"${d#/proc/} $s\"; done")
    exit_code, output = container.exec_run(["sh", "-c", script], user="0", stderr=False)
    assert exit_code == 0, output
    # a process that ended while it was read (the session's start-up runs short-lived ones) is left out
    fields = (line.split() for line in output.decode().splitlines())
    return {row[0]: (row[1], row[2]) for row in fields if len(row) == 3}


def test_vnc_answers_only_on_the_socket_with_the_file_password_and_shows_a_drawn_desktop(
        docker_client, base_image, run_dir, artifacts_dir):
    folder = rundir.prepare(run_dir, f"t-{uuid.uuid4().hex[:6]}", 4242, 4242, "s3ssion!", "watch0nly")
    started = time.monotonic()
    container = _start(docker_client, base_image, folder, cap_drop=["ALL"], security_opt=["no-new-privileges"],
                       pids_limit=512, mem_limit="2g")
    try:
        _wait_locked(folder, 4242, container)
        frame = rfb.wait_for_desktop(folder.socket, "s3ssion!", timeout=60)
        ready = time.monotonic() - started
        (artifacts_dir / "desktop.png").write_bytes(frame.to_png())
        assert (frame.width, frame.height) == (1280, 800)
        assert frame.distinct_colours() >= 8, "the framebuffer is a single colour"
        assert ready < 60
        assert rfb.capture(folder.socket, "watch0nly").width == 1280  # the view-only password works too
        with pytest.raises(rfb.RFBError, match="authentication failed"):
            rfb.capture(folder.socket, "wrong-pw")
        container.reload()
        assert container.status == "running"
        processes = _process_status(container)
        assert {uid for uid, _ in processes.values()} == {"4242"}
        assert {nnp for _, nnp in processes.values()} == {"1"}
        environment = container.exec_run(["sh", "-c", "cat /proc/[0-9]*/environ | tr '\\0' '\\n'"], user="0")
        assert b"s3ssion!" not in environment.output and b"PASSWORD=" not in environment.output
        tcp = container.exec_run(["sh", "-c", "cat /proc/net/tcp /proc/net/tcp6"]).output.decode().splitlines()
        assert not [line for line in tcp if line.split()[3:4] == ["0A"]], "something listens on TCP"
    except Exception:
        print(container.logs(tail=80).decode(errors="replace"))
        raise
    finally:
        container.remove(force=True)
        rundir.remove(folder)


def test_bad_passwords_never_lock_the_owner_out(docker_client, base_image, run_dir):
    """TigerVNC blacklists a client address after 5 failures, and every client of a Unix socket has the
    same one: with -UseBlacklist=0 the owner still gets in after any number of bad attempts."""
    folder = rundir.prepare(run_dir, f"t-{uuid.uuid4().hex[:6]}", 4242, 4242, "rightpw1", "viewpw12")
    container = _start(docker_client, base_image, folder, environment={"ASCI_DESKTOP_CMD": "sleep 600"})
    try:
        _wait_locked(folder, 4242, container)
        for _ in range(12):
            with pytest.raises(rfb.RFBError, match="authentication failed"):
                rfb.capture(folder.socket, "badpass!")
        assert rfb.capture(folder.socket, "rightpw1").width == 1280
    finally:
        container.remove(force=True)
        rundir.remove(folder)


@pytest.mark.parametrize("case, environment, expected", [
    ("no password file", {"VNC_PASSWD_FILE": "/run/asci/secret/missing"}, b"refusing to start without a password"),
    ("a password in the environment", {"VNC_PASSWORD": "envpass1"}, b"refusing a VNC password in the environment"),
    ("a password file named in the environment", {"VNC_PASSWORD_FILE": "/etc/hostname"},
     b"refusing a VNC password in the environment"),
])
def test_the_desktop_refuses_to_start_without_a_safe_password(docker_client, base_image, run_dir, case, environment,
                                                              expected):
    folder = rundir.prepare(run_dir, f"t-{uuid.uuid4().hex[:6]}", 4242, 4242, "s3ssion!", "")
    container = _start(docker_client, base_image, folder, environment=environment)
    try:
        result = container.wait(timeout=30)
        assert result["StatusCode"] == 64, container.logs()
        assert expected in container.logs()
        assert not os.path.exists(folder.socket)
    finally:
        container.remove(force=True)
        rundir.remove(folder)


def test_started_as_root_it_drops_to_the_desktop_user_with_no_new_privs(docker_client, base_image, run_dir):
    folder = rundir.prepare(run_dir, f"t-{uuid.uuid4().hex[:6]}", 1000, 1000, "fromfile", "")
    container = _start(docker_client, base_image, folder, user="0:0")
    try:
        _wait_locked(folder, 1000, container)
        rfb.wait_for_desktop(folder.socket, "fromfile", timeout=60)
        processes = _process_status(container)
        assert {uid for pid, (uid, _) in processes.items() if pid != "1"} == {"1000"}
        assert {nnp for pid, (_, nnp) in processes.items() if pid != "1"} == {"1"}
    except Exception:
        print(container.logs(tail=80).decode(errors="replace"))
        raise
    finally:
        container.remove(force=True)
        rundir.remove(folder)
