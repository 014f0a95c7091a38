"""Probe desktops: an image launched exactly as a user's session is, for ci's smoke gate.

A probe goes through the configured backend with the same launch parameters (``desktop_spec``:
the same isolation, network and hardening) and the same start-up (a session folder with its
password file (the node side's ``prepare``), ``start``, then ``Broker.await_desktop``, which proves that the probe's own VNC
server serves its socket) as a session, on the first node that is up (the first Docker host when
none is registered yet), under an unprivileged uid of its own and a throw-away home volume. It
holds no port, so nothing can pre-empt it. It carries no session labels, so reconciliation never
mistakes it for an orphan; ``probe_desktop`` removes the container, its home and its folder when
the ``with`` block ends. On a node with an agent the folder is made and the server proved on the
node, and ``Probe.socket`` is a local bridge to the agent's relay (``broker.agent_client``).
"""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy import select

from asci.config import Settings
from asci.db import session_scope
from broker import rundir
from broker.agent_client import AgentNode, LocalBridge
from broker.backends.base import LaunchSpec, NodeRef
from broker.models import Node, NodeState
from broker.service import Broker, desktop_spec, new_password

PROBE_UID = 65000
DISPLAY = ":1"  # every desktop is display :1 of its own namespaces


@dataclass
class Probe:
    """A running probe desktop: the VNC socket it serves, and how to run commands in it."""

    socket: str
    password: str
    broker: Broker
    node: NodeRef
    spec: LaunchSpec
    state: dict

    def run(self, command: str) -> tuple[int, str]:
        """Run a shell command in the desktop as its user, with its ``DISPLAY``."""
        return self.broker.backend.exec(self.node, self.state, ["/bin/sh", "-c", command],
                                        f"{self.spec.uid}:{self.spec.gid}",
                                        {"HOME": self.spec.home_path, "DISPLAY": DISPLAY})

    def logs(self, tail: int = 20) -> str:
        """The desktop's last log lines."""
        return self.broker.backend.logs(self.node, self.state, tail=tail)


def _node(settings: Settings) -> NodeRef:
    with session_scope(settings) as db:
        node = db.scalar(select(Node).where(Node.state == NodeState.UP, Node.drained.is_(False)).order_by(Node.id).limit(1))
        if node is not None:
            return NodeRef.of(node)
    return NodeRef("local", settings.docker_hosts[0])


@contextlib.contextmanager
def probe_desktop(settings: Settings, image: str, label: str, broker: Broker | None = None) -> Iterator[Probe]:
    """Start ``image`` (``repo@sha256:...``) as a desktop with ``broker`` (one for ``settings`` when None);
    yields the :class:`Probe` once its VNC server is up."""
    broker = broker or Broker(settings)
    node = _node(settings)
    side, agent = broker.node_side(node), AgentNode.of(node)
    token = uuid.uuid4().hex[:10]
    password, name, key = new_password(), f"asci-probe-{label}-{token}", f"probe-{token}"
    folder = side.prepare(node, key, PROBE_UID, PROBE_UID, password, new_password(),
                          rundir.hostname_for(name))
    spec = desktop_spec(settings, session_id=0, name=name, image=image, folder=folder,
                        uid=PROBE_UID, gid=PROBE_UID, user_name="asci-probe", home_volume=f"asci-probe-home-{token}",
                        home_path="/home/asci-probe", cpus=1.0, memory_bytes=2 << 30,
                        cpu_guarantee=min(1.0, settings.session_cpu_guarantee),
                        memory_guarantee_bytes=min(2 << 30, settings.session_memory_guarantee_mb << 20),
                        labels={"asci.probe": "1", "asci.environment": label})
    state: dict = {}
    bridge = None
    try:
        broker.backend.ensure_image(node, image)
        state = broker.backend.start(node, spec)
        broker.await_desktop(node, state, folder, PROBE_UID, settings.session_start_timeout_s)
        if agent is not None:
            bridge = LocalBridge(agent, key, parent=settings.run_dir / "bridges")
        yield Probe(bridge.path if bridge else str(folder.socket), password, broker, node, spec, state)
    finally:
        if bridge is not None:
            bridge.close()
        if state:
            broker.backend.stop(node, state)
        broker.backend.remove_volume(node, spec.home_volume)
        side.release(node, side.socket_of(node, key, folder))
