"""A debian12-mate desktop really runs: VNC answers with the password and draws a desktop."""

import time

import pytest

from asci import rfb
from tests.support import TEST_LABEL, free_port

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]


def _start(docker_client, image, port, **extra):
    environment = {"VNC_PORT": str(port)}
    environment.update(extra.pop("environment", {}))
    return docker_client.containers.run(image, detach=True, network_mode="host", environment=environment,
                                        labels={TEST_LABEL: "1"}, **extra)



def _process_uids(container) -> set[str]:
    """The uids of the container's own processes (not the ps that docker exec starts)."""
    exit_code, output = container.exec_run(["ps", "-eo", "uid=,comm="])
    assert exit_code == 0
    rows = [line.split(None, 1) for line in output.decode().splitlines() if line.strip()]
    return {uid for uid, command in rows if command.strip() != "ps"}


def test_vnc_answers_with_the_password_and_shows_a_drawn_desktop(docker_client, base_image, artifacts_dir):
    port = free_port()
    password = "s3ssion!"
    started = time.monotonic()
    container = _start(docker_client, base_image, port, environment={"VNC_PASSWORD": password},
                       user="4242:4242", cap_drop=["ALL"], security_opt=["no-new-privileges"],
                       pids_limit=512, mem_limit="2g")
    try:
        frame = rfb.wait_for_desktop("127.0.0.1", port, password, timeout=60)
        ready = time.monotonic() - started
        (artifacts_dir / "desktop.png").write_bytes(frame.to_png())
        assert (frame.width, frame.height) == (1280, 800)
        assert frame.distinct_colours() >= 8, "the framebuffer is a single colour"
        assert ready < 60
        with pytest.raises(rfb.RFBError, match="authentication failed"):
            rfb.capture("127.0.0.1", port, "wrong-pw")
        container.reload()
        assert container.status == "running"
        assert _process_uids(container) == {"4242"}
    except Exception:
        print(container.logs(tail=80).decode(errors="replace"))
        raise
    finally:
        container.remove(force=True)


def test_the_desktop_refuses_to_start_without_a_password(docker_client, base_image):
    container = _start(docker_client, base_image, free_port())
    try:
        result = container.wait(timeout=30)
        assert result["StatusCode"] == 64
        assert b"refusing to start without a password" in container.logs()
    finally:
        container.remove(force=True)


def test_password_from_a_mounted_file_and_root_start_drops_privileges(docker_client, base_image, tmp_path):
    secret = tmp_path / "vncpass"
    secret.write_text("fromfile\n")
    secret.chmod(0o644)
    port = free_port()
    container = _start(docker_client, base_image, port,
                       environment={"VNC_PASSWORD_FILE": "/run/asci/vncpass"},
                       volumes={str(secret): {"bind": "/run/asci/vncpass", "mode": "ro"}})
    try:
        rfb.wait_for_desktop("127.0.0.1", port, "fromfile", timeout=60)
        assert _process_uids(container) == {"1000"}  # the image's unprivileged desktop user
    except Exception:
        print(container.logs(tail=80).decode(errors="replace"))
        raise
    finally:
        container.remove(force=True)
