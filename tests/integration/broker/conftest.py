"""Extra real Docker daemons as nodes: a second daemon on a unix socket and a TLS port on 127.0.0.1
(certificates made here), and a one-node swarm; the desktop image pulled into each once.

Daemons are started and stopped by their own PID (``tests/daemons.py``); a failing test gets the
daemon's log tail printed. The second daemon lives for the whole session (a test may stop it: the
``node2`` fixture starts it again, on the same data root, so its image stays).
"""

from __future__ import annotations

import re

import pytest

from broker.backends.base import NodeRef
from broker.backends.docker import DockerBackend
from tests.daemons import Dockerd, SwarmNode, free_port_on, gossip_free_address, make_pki
from tests.support import require_programs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(request) -> bool:
    report = getattr(request.node, "rep_call", None)
    return bool(report and report.failed)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA with a server certificate (IP SAN 127.0.0.1) and a client certificate; ``rogue``: another CA's."""
    require_programs("openssl")
    root = tmp_path_factory.mktemp("pki")
    return {"good": make_pki(root / "good"), "rogue": make_pki(root / "rogue", name="asci-rogue")}


@pytest.fixture(scope="session")
def node2_daemon(tmp_path_factory, pki, docker_client):
    """A second dockerd: its own unix socket, and TCP on 127.0.0.1 with --tlsverify (our CA)."""
    daemon = Dockerd(tmp_path_factory.mktemp("dockerd2"), name="node2", tcp_port=free_port_on(), pki=pki["good"])
    daemon.start()
    yield daemon
    if daemon.process and daemon.process.poll() is None:
        daemon.remove_containers()
    daemon.cleanup()


@pytest.fixture
def node2(request, node2_daemon):
    """The second daemon, up (started again when a test stopped it); its log tail when the test fails."""
    if not node2_daemon.answers():
        node2_daemon.stop()
        node2_daemon.start()
    yield node2_daemon
    if _failed(request):
        print(f"--- dockerd {node2_daemon.name} log tail\n{node2_daemon.log_tail()}")


@pytest.fixture
def second_daemon(node2):
    """The second daemon as the plain-socket tests use it: ``{"url", "process", "log"}``."""
    return {"url": node2.url, "process": node2.process, "log": node2.log_path}


def tls_ref(daemon: Dockerd, pki, name: str = "node2") -> NodeRef:
    """How the broker reaches ``daemon`` over TLS with the client certificate of ``pki``."""
    return NodeRef(name, daemon.tcp_url, str(pki.ca), str(pki.client_cert), str(pki.client_key))


@pytest.fixture(scope="session")
def node2_image(node2_daemon, desktop_image, pki):
    """The second node pulls the desktop image by digest over TLS (the node-lacks-it path), once."""
    backend = DockerBackend()
    ref = tls_ref(node2_daemon, pki["good"])
    lines = []
    assert backend.ensure_image(ref, desktop_image, lines.append) is True
    # The pull reports bytes done of total; the last line has every layer done.
    assert lines and re.fullmatch(r"node \S+: pulling \S+: [\d.]+ MiB of [\d.]+ MiB \((\d+) of \1 layers done\)",
                                  lines[-1]), lines
    assert backend.ensure_image(ref, desktop_image, lines.append) is False
    backend.close()
    return desktop_image


def _swarm_address() -> str:
    """127.0.0.1 unless another swarm's gossip holds its port 7946 there; then a loopback address of our own."""
    address = gossip_free_address(("127.0.0.1", "127.0.0.13", "127.0.0.113", "127.0.0.213"))
    if address is None:
        pytest.fail("port 7946 is taken on every loopback address tried")
    return address


@pytest.fixture(scope="module")
def swarm_node(tmp_path_factory, docker_client):
    """A dockerd of its own made a one-node swarm (advertise address on loopback, ingress removed)."""
    node = SwarmNode(tmp_path_factory.mktemp("swarm"), address=_swarm_address())
    try:
        node.start()
    except Exception:
        node.cleanup()
        raise
    yield node
    node.cleanup()
