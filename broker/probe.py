"""Probe desktops: an image launched exactly as a user's session is, for ci's smoke gate.

A probe goes through the configured backend with the same launch parameters (and so the same
isolation) as a session, on the first node that is up (the first Docker host when none is
registered yet), under an unprivileged uid of its own and a throw-away home volume. It carries no
session labels, so reconciliation never mistakes it for an orphan; ``probe_desktop`` removes the
container and its home when the ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import select

from asci.config import Settings
from asci.db import session_scope
from asci.net import free_port
from broker.backends.base import LaunchSpec, NodeRef
from broker.errors import NoCapacity
from broker.models import Node, NodeState
from broker.service import Broker, broker_for

PROBE_PORTS = range(6900, 7000)  # outside the sessions' range: no collision with a session's lease
PROBE_UID = 65000


@dataclass
class Probe:
    """A running probe desktop: where its VNC server listens, and how to run commands in it."""

    host: str
    port: int
    password: str
    display: int
    broker: Broker
    node: NodeRef
    spec: LaunchSpec
    state: dict

    def run(self, command: str) -> tuple[int, str]:
        """Run a shell command in the desktop as its user, with its ``DISPLAY``."""
        return self.broker.backend.exec(self.node, self.state, ["/bin/sh", "-c", command],
                                        f"{self.spec.uid}:{self.spec.gid}",
                                        {"HOME": self.spec.home_path, "DISPLAY": f":{self.display}"})

    def logs(self, tail: int = 20) -> str:
        """The desktop's last log lines."""
        return self.broker.backend.logs(self.node, self.state, tail=tail)


def _node(settings: Settings) -> tuple[NodeRef, str]:
    with session_scope(settings) as db:
        node = db.scalar(select(Node).where(Node.state == NodeState.UP).order_by(Node.id).limit(1))
        if node is not None:
            return NodeRef.of(node), node.vnc_host
    return NodeRef("local", settings.docker_hosts[0]), "127.0.0.1"


@contextlib.contextmanager
def probe_desktop(settings: Settings, image: str, label: str) -> Iterator[Probe]:
    """Start ``image`` (``repo@sha256:...``) as a desktop; yields the :class:`Probe` once started."""
    broker = broker_for(settings)
    node, host = _node(settings)
    port = free_port(PROBE_PORTS)
    if port is None:
        raise NoCapacity(f"no free port for a probe desktop in {PROBE_PORTS.start}-{PROBE_PORTS.stop - 1}")
    token = uuid.uuid4().hex[:10]
    spec = LaunchSpec(session_id=0, name=f"asci-probe-{label}-{token}", image=image, port=port,
                      display=port - 5900, password=secrets.token_urlsafe(6)[:8], uid=PROBE_UID, gid=PROBE_UID,
                      user_name="asci-probe", home_volume=f"asci-probe-home-{token}", home_path="/home/asci-probe",
                      cpus=1.0, memory_bytes=2 << 30, pids_limit=1024,
                      labels={"asci.probe": "1", "asci.environment": label})
    state: dict = {}
    try:
        broker.backend.ensure_image(node, image)
        state = broker.backend.start(node, spec)
        yield Probe(host, port, spec.password, spec.display, broker, node, spec, state)
    finally:
        if state:
            broker.backend.stop(node, state)
        broker.backend.remove_volume(node, spec.home_volume)
