"""Nodes that are other machines in every way this sandbox allows (``/work/shared/far-machine.md``).

A :class:`FarNode` runs its own dockerd and its own node agent (``asci node agent``) inside mount and
pid namespaces of their own (``unshare --mount --pid --fork --mount-proc``): the platform's data
directories are replaced by empty tmpfs there (the pytest base temp folder, where every test's data
directory and session run folder lie, and ``ASCI_DATA_DIR``), its data root, exec root, sockets and
session run folder are its own, and it listens with TLS only, on a loopback address of its own
(127.0.0.2, 127.0.0.3 ...). What it shares with the platform is what shared storage would share: a
folder outside those (experiment data and the home root).

The agent and the engine each run in a loop inside the namespace, so a test can stop either
(:meth:`FarNode.stop_agent`, :meth:`stop_engine`: killed by its PID, seen from here) and start it
again (:meth:`start_agent`, :meth:`start_engine`; the engine keeps its data root). Stopping the node
sends TERM to the namespace's first process (its trap ends the engine cleanly and every process of
the node with the namespace); nothing is
unmounted by hand outside: the node's mounts live and die with its namespace. The engine's data root
is a tmpfs of the namespace (removing a pulled desktop image's layers from disk took 150 s here).

A far node may join a swarm as a worker (:meth:`FarNode.join_swarm`, ``docker swarm join`` through its
engine's TLS API with a manager's worker token): it advertises its own loopback address (the gossip
port 7946 is fixed per address, so a swarm far node needs an address no other swarm daemon uses) and
gets a ``docker_gwbridge`` with an interface name of its own first. The far nodes share this host's
network namespace, so that interface is the host's: :meth:`FarNode.stop` deletes it if the node's
engine left it behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import docker

from broker import certs
from tests.daemons import API_VERSION, DOCKERD, create_gateway_bridge, free_port_on, gateway_subnet


class FarNode:
    """One far node: ``name`` at ``address``, certificates issued from the CA in ``pki``."""

    def __init__(self, name: str, address: str, pki: Path, hidden: list[Path]) -> None:
        self.name, self.address, self.pki = name, address, Path(pki)
        self.root = Path(f"/tmp/asci-far-{name}-{uuid.uuid4().hex[:6]}")  # short: containerd's socket paths
        self.hidden = [Path(p) for p in hidden]
        self.docker_port = free_port_on(address)
        self.agent_port = free_port_on(address)
        self.process: subprocess.Popen | None = None
        self.swarm_bridge = ""  # host interface of its swarm gateway bridge, once it joined a swarm
        self.swarm_node_id = ""

    # ------------------------------------------------------------ addresses
    @property
    def docker_url(self) -> str:
        return f"tcp://{self.address}:{self.docker_port}"

    @property
    def agent(self) -> str:
        return f"{self.address}:{self.agent_port}"

    @property
    def tls_dir(self) -> Path:
        """The node's own copy of its certificates (``ca.pem``, ``server-cert.pem``, ``server-key.pem``)."""
        return self.root / "tls"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def tls(self) -> dict:
        """The platform's client files, as ``register_node`` takes them."""
        return {"tls_ca": str(self.pki / "ca.pem"), "tls_cert": str(self.pki / "cert.pem"),
                "tls_key": str(self.pki / "key.pem")}

    # ------------------------------------------------------------ life
    def script(self) -> str:
        hide = "\n".join(f"[ -d {p} ] && mount -t tmpfs -o mode=0700 tmpfs {p}" for p in self.hidden)
        python, pythonpath = sys.executable, os.environ.get("PYTHONPATH", "")
        root = self.root
        return f"""set -e
# TERM: no restarts; the engine ends cleanly (its loop with it), the agent's loop is killed
trap 'touch {root}/stop; kill $(cat {root}/dockerd.pid 2>/dev/null) 2>/dev/null || true; \\
  kill $agent_loop 2>/dev/null || true; wait; exit 0' TERM
mount --make-rprivate /
{hide}
mkdir -p {root}/docker-root
mount -t tmpfs -o size=6g,mode=0710 tmpfs {root}/docker-root   # the node's disk: gone with the namespace
(while [ ! -e {root}/stop ]; do
   if [ -e {root}/engine-off ]; then sleep 0.1; continue; fi
   {DOCKERD} --data-root {root}/docker-root --exec-root {root}/x --pidfile {root}/dockerd.pid \\
     --bridge=none --iptables=false --ip6tables=false -H unix://{root}/docker.sock \\
     -H tcp://{self.docker_url[6:]} --tlsverify --tlscacert {self.tls_dir}/ca.pem \\
     --tlscert {self.tls_dir}/server-cert.pem --tlskey {self.tls_dir}/server-key.pem >>{root}/dockerd.log 2>&1 || true
 done) &
(while [ ! -e {root}/stop ]; do
   if [ -e {root}/agent-off ]; then sleep 0.1; continue; fi
   PYTHONPATH={pythonpath} {python} -m asci node agent --listen {self.agent} --tls-dir {self.tls_dir} \\
     --docker unix://{root}/docker.sock --run-dir {self.run_dir} >>{root}/agent.log 2>&1 || true
 done) &
agent_loop=$!
wait
"""

    def start(self, timeout: float = 90) -> "FarNode":
        self.root.mkdir(mode=0o700)
        issued = certs.issue(self.pki, self.name, [self.address])
        shutil.copytree(issued.files[0].parent, self.tls_dir)
        (self.root / "node.sh").write_text(self.script())
        with open(self.root / "node.out", "ab") as out:
            self.process = subprocess.Popen(["unshare", "--mount", "--pid", "--fork", "--mount-proc", "bash",
                                             str(self.root / "node.sh")], stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        began = time.monotonic()
        while not (self.engine_answers() and self.agent_answers()):
            if time.monotonic() - began > timeout or self.process.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"far node {self.name} did not start:\n{tail}")
            time.sleep(0.2)
        return self

    def client(self, timeout: int = 60) -> docker.DockerClient:
        """A client of the node's engine over TCP with TLS (the way the platform reaches it)."""
        tls = docker.tls.TLSConfig(client_cert=(str(self.pki / "cert.pem"), str(self.pki / "key.pem")),
                                   ca_cert=str(self.pki / "ca.pem"), verify=True)
        client = docker.DockerClient(base_url=self.docker_url, tls=tls, timeout=timeout, version=API_VERSION)
        client.api.trust_env = False
        return client

    def engine_answers(self) -> bool:
        try:
            client = self.client(timeout=5)
            try:
                return client.ping()
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - not up (yet)
            return False

    def agent_node(self):
        from broker.agent_client import AgentNode

        tls = self.tls()
        return AgentNode(self.name, self.agent, tls["tls_ca"], tls["tls_cert"], tls["tls_key"], timeout=5)

    def agent_answers(self) -> bool:
        try:
            self.agent_node().ping()
            return True
        except Exception:  # noqa: BLE001 - not up (yet)
            return False

    @staticmethod
    def _pids(match) -> list[int]:
        """PIDs (seen from here) of the processes whose argv ``match`` accepts."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if match(argv):
                found.append(int(entry))
        return found

    def agent_pids(self) -> list[int]:
        """PIDs (seen from here) of the node's agent processes."""
        return self._pids(lambda argv: b"agent" in argv and b"--listen" in argv and self.agent.encode() in argv)

    def engine_pids(self) -> list[int]:
        """PIDs (seen from here) of the node's dockerd."""
        data_root = str(self.root / "docker-root").encode()
        return self._pids(lambda argv: argv[0] == DOCKERD.encode() and data_root in argv)

    def _kill_and_hold(self, switch: str, pids) -> None:
        """Touch ``switch`` (the node's restart loop then keeps the process down), SIGKILL ``pids()`` by PID
        and wait up to 10 s for them to be gone."""
        (self.root / switch).touch()
        for pid in pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        while pids() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _release_and_wait(self, switch: str, answers, what: str, timeout: float, pause: float) -> None:
        """Remove ``switch`` (the restart loop starts the process again) and wait until ``answers()``."""
        (self.root / switch).unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        while not answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {what} of {self.name} did not come back:\n{self.log_tail()}")
            time.sleep(pause)

    def stop_agent(self) -> None:
        """Kill the agent by its PID and keep it stopped."""
        self._kill_and_hold("agent-off", self.agent_pids)

    def start_agent(self, timeout: float = 30) -> None:
        self._release_and_wait("agent-off", self.agent_answers, "agent", timeout, 0.1)

    # ------------------------------------------------------------ swarm
    def join_swarm(self, manager: docker.DockerClient, timeout: float = 60) -> str:
        """Join the swarm ``manager`` (a client of one of its managers) leads, as a worker: ``docker swarm
        join`` through this node's engine over TLS, advertising its own address; returns its swarm node
        id once the manager sees it ready."""
        swarm = manager.info()["Swarm"]
        remote = swarm["RemoteManagers"][0]["Addr"]
        manager.swarm.reload()
        token = manager.swarm.attrs["JoinTokens"]["Worker"]
        client = self.client()
        try:
            self.swarm_bridge = f"ascigw{uuid.uuid4().hex[:6]}"
            create_gateway_bridge(client, self.swarm_bridge, gateway_subnet(self.address))
            client.swarm.join(remote_addrs=[remote], join_token=token, advertise_addr=self.address,
                              listen_addr=f"{self.address}:{free_port_on(self.address)}")
            self.swarm_node_id = client.info()["Swarm"]["NodeID"]
        finally:
            client.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = manager.nodes.get(self.swarm_node_id).attrs["Status"]["State"]
            except docker.errors.NotFound:
                state = "unknown"
            if state == "ready":
                return self.swarm_node_id
            if time.monotonic() > deadline:
                raise RuntimeError(f"far node {self.name} joined but is {state} after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def leave_swarm(self, manager: docker.DockerClient | None = None) -> None:
        """Leave the swarm (its tasks end) and remove the gateway bridge; ``manager`` forgets the node."""
        if not self.swarm_node_id:
            return
        try:
            client = self.client(timeout=30)
            try:
                if client.info()["Swarm"]["LocalNodeState"] != "inactive":
                    client.swarm.leave(force=True)
                for network in client.networks.list(names=["docker_gwbridge"]):
                    network.remove()
            finally:
                client.close()
        except docker.errors.DockerException as exc:
            print(f"far node {self.name}: leaving the swarm: {exc}")
        if manager is not None:
            try:
                manager.nodes.get(self.swarm_node_id).remove(force=True)
            except docker.errors.DockerException:
                pass
        self.swarm_node_id = ""

    def _delete_swarm_bridge(self) -> None:
        if self.swarm_bridge and Path(f"/sys/class/net/{self.swarm_bridge}").exists():
            subprocess.run(["ip", "link", "delete", self.swarm_bridge], check=False)

    def stop_engine(self) -> None:
        """Kill the node's dockerd (SIGKILL, by its PID: a machine that fails) and keep it stopped; its
        containers' processes are left as they are, as a crashed engine leaves them."""
        self._kill_and_hold("engine-off", self.engine_pids)

    def start_engine(self, timeout: float = 60) -> None:
        """Start the node's dockerd again (its data root, and so its images and swarm state, kept)."""
        self._release_and_wait("engine-off", self.engine_answers, "engine", timeout, 0.2)

    def log_tail(self, chars: int = 3000) -> str:
        parts = []
        for name in ("node.out", "dockerd.log", "agent.log"):
            try:
                parts.append(f"--- {name}\n" + (self.root / name).read_text(errors="replace")[-chars:])
            except OSError:
                pass
        return "\n".join(parts)

    def remove_containers(self) -> None:
        try:
            client = self.client(timeout=30)
            for container in client.containers.list(all=True):
                try:
                    container.remove(force=True)
                except docker.errors.NotFound:
                    pass
            client.close()
        except docker.errors.DockerException:
            pass

    def stop(self, timeout: float = 60) -> None:
        """TERM to the namespace's first process (its trap ends the node), then remove the node's folder."""
        if self.process is not None and self.process.poll() is None:
            self.remove_containers()
            for pid in self._children(self.process.pid):  # bash node.sh: the namespace's first process
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self._delete_swarm_bridge()
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.pki / self.name, ignore_errors=True)

    @staticmethod
    def _children(pid: int) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []


class FarCluster:
    """Far nodes sharing one CA and one shared storage folder (``experiments/``, ``homes/``)."""

    def __init__(self, hidden: list[Path]) -> None:
        self.shared = Path(f"/tmp/asci-far-shared-{uuid.uuid4().hex[:6]}")
        self.pki = self.shared / "pki"
        self.experiments = self.shared / "experiments"
        self.homes = self.shared / "homes"
        self.hidden = hidden
        self.nodes: dict[str, FarNode] = {}

    def start(self, count: int = 2) -> "FarCluster":
        for folder in (self.pki, self.experiments, self.homes):
            folder.mkdir(parents=True, mode=0o755)
        os.chmod(self.pki, 0o700)
        certs.init(self.pki, name="asci-test")
        for number in range(count):
            self.add(f"far{number + 1}", f"127.0.0.{number + 2}")
        return self

    def add(self, name: str, address: str) -> FarNode:
        """Start one more far node ``name`` on ``address`` (certificates from the cluster's CA)."""
        self.nodes[name] = FarNode(name, address, self.pki, self.hidden)
        return self.nodes[name].start()

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        shutil.rmtree(self.shared, ignore_errors=True)


def far_hidden(tmp_path_factory) -> list:
    """What far nodes must not see of this machine: the pytest base temp folder (every test's data
    directory and run folder) and ``ASCI_DATA_DIR``."""
    hidden = [tmp_path_factory.getbasetemp()]
    if os.environ.get("ASCI_DATA_DIR"):
        hidden.append(os.environ["ASCI_DATA_DIR"])
    return hidden
