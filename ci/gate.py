"""The smoke-test gate a new version passes before it becomes current.

It launches the version exactly as the broker does (``broker.backends.docker.DockerBackend``
with ``broker.containers`` create parameters: the image by digest, host networking, a random
VNC password, an unprivileged uid, every capability dropped), waits until the VNC framebuffer
shows a drawn desktop (:func:`asci.rfb.wait_for_desktop`), then runs each check command the
recipe declares inside the running desktop, as the desktop's user. Any failure raises
:class:`GateFailed` with the reason; the container and its home volume are removed either way.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from typing import Callable

from asci import rfb
from asci.config import Settings
from asci.net import free_port
from broker.backends.base import LaunchSpec, NodeRef
from broker.backends.docker import DockerBackend
from ci.errors import GateFailed

GATE_PORTS = range(6900, 7000)  # outside the broker's session range: no collision with sessions
GATE_UID = 65000


@dataclass
class GateReport:
    """What the gate saw: framebuffer size and colours, and each check's exit code and output."""

    width: int = 0
    height: int = 0
    colours: int = 0
    checks: list[dict] = field(default_factory=list)


def _free_port() -> int:
    port = free_port(GATE_PORTS)
    if port is not None:
        return port
    raise GateFailed(f"no free port for the smoke test in {GATE_PORTS.start}-{GATE_PORTS.stop - 1}")


def smoke_test(settings: Settings, image: str, checks: list[str] | tuple[str, ...], environment: str,
               log: Callable[[str], None] = lambda line: None) -> GateReport:
    """Launch ``image`` (``repo@sha256:...``) like a session, wait for the desktop, run ``checks``."""
    backend = DockerBackend()
    node = NodeRef("gate", settings.docker_hosts[0])
    port = _free_port()
    token = uuid.uuid4().hex[:10]
    spec = LaunchSpec(session_id=0, name=f"asci-gate-{environment}-{token}", image=image, port=port,
                      display=port - 5900, password=secrets.token_urlsafe(6)[:8], uid=GATE_UID, gid=GATE_UID,
                      user_name="asci-gate", home_volume=f"asci-gate-home-{token}", home_path="/home/asci-gate",
                      cpus=1.0, memory_bytes=2 << 30, pids_limit=1024,
                      labels={"asci.gate": "1", "asci.environment": environment})
    report = GateReport()
    state: dict = {}
    try:
        backend.ensure_image(node, image)
        state = backend.start(node, spec)
        log(f"smoke test: launched {image} on 127.0.0.1:{port}")
        try:
            frame = rfb.wait_for_desktop("127.0.0.1", port, spec.password, timeout=settings.ci_gate_timeout_s)
        except rfb.RFBError as exc:
            tail = backend.logs(node, state, tail=20).strip().splitlines()[-5:]
            raise GateFailed(f"desktop did not come up: {exc}" + (f" (log: {' | '.join(tail)})" if tail else "")) from None
        report.width, report.height, report.colours = frame.width, frame.height, frame.distinct_colours()
        log(f"smoke test: desktop drawn ({frame.width}x{frame.height}, {report.colours} colours)")
        container = backend.client(node).containers.get(state["container_id"])
        for check in checks:
            exit_code, output = container.exec_run(["/bin/sh", "-c", check], user=f"{spec.uid}:{spec.gid}",
                                                   environment={"HOME": spec.home_path, "DISPLAY": f":{spec.display}"})
            text = output.decode(errors="replace").strip()
            report.checks.append({"command": check, "exit_code": exit_code, "output": text[-2000:]})
            log(f"smoke test: `{check}` exited {exit_code}: {text[-200:]}")
            if exit_code != 0:
                raise GateFailed(f"check `{check}` exited {exit_code}: {text[-300:] or 'no output'}")
        return report
    finally:
        if state:
            backend.stop(node, state)
        try:
            backend.client(node).volumes.get(spec.home_volume).remove(force=True)
        except Exception:  # noqa: BLE001 - the volume may never have been created
            pass
        backend.close()
