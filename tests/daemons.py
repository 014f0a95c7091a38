"""Extra Docker daemons beside the main one, standing in for nodes: plain, TLS on 127.0.0.1, a one-node swarm.

Plain helpers (the fixtures are in ``tests/integration/broker/conftest.py``). Every daemon has its own
``--data-root``, a short ``--exec-root`` under /tmp (containerd's socket paths are length-limited),
``--pidfile``, a unix socket of its own and optionally a TLS TCP port on 127.0.0.1; always
``--bridge=none --iptables=false --ip6tables=false``. A daemon is stopped by its own PID only; what
a crash leaves (containerd shims naming its exec root) is killed by PID; mounts under its roots are
unmounted and the roots removed.

Swarm on a ``--bridge=none --iptables=false`` daemon (Docker 20.10, measured): ``swarm.init`` makes
an ``ingress`` overlay and a ``docker_gwbridge`` bridge whose host interface is literally named
``docker_gwbridge``; so the bridge is made first with an interface name of its own and a small
subnet, and ``ingress`` is removed after init (no published ports are used). The gossip port 7946
is fixed per advertise address: each swarm daemon needs its own loopback address.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import docker

DOCKERD = "/usr/sbin/dockerd"
API_VERSION = "1.41"


def free_port_on(address: str = "127.0.0.1") -> int:
    """A TCP port on ``address`` that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- TLS material
@dataclass
class Pki:
    """A CA, a server certificate for IP 127.0.0.1 and a client certificate (PEM files in ``folder``)."""

    folder: Path
    ca: Path = field(init=False)
    server_cert: Path = field(init=False)
    server_key: Path = field(init=False)
    client_cert: Path = field(init=False)
    client_key: Path = field(init=False)

    def __post_init__(self) -> None:
        self.ca, self.server_cert, self.server_key, self.client_cert, self.client_key = (
            self.folder / name for name in ("ca.pem", "server-cert.pem", "server-key.pem", "cert.pem", "key.pem"))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path, name: str = "asci-test", days: int = 2) -> Pki:
    """CA + server (SAN IP:127.0.0.1, serverAuth) + client (clientAuth), EC P-256, with the openssl CLI."""
    folder.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", str(days),
             "-subj", f"/CN={name}-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)
    for stem, subject, ext in (
            ("server", "/CN=127.0.0.1", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
            ("client", f"/CN={name}-client", "extendedKeyUsage=clientAuth\n")):
        key, cert = ("server-key.pem", "server-cert.pem") if stem == "server" else ("key.pem", "cert.pem")
        (folder / f"{stem}.ext").write_text(ext + "keyUsage=critical,digitalSignature,keyEncipherment\n")
        _openssl("req", *ec, "-keyout", key, "-out", f"{stem}.csr", "-subj", subject, cwd=folder)
        _openssl("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                 "-out", cert, "-days", str(days), "-extfile", f"{stem}.ext", cwd=folder)
    for key in folder.glob("*key.pem"):
        key.chmod(0o600)
    return Pki(folder)


# --------------------------------------------------------------------------- daemons
class Dockerd:
    """One extra dockerd; ``start()`` returns the seconds until it answered ``/_ping``."""

    def __init__(self, root: Path, name: str = "node", tcp_port: int | None = None, pki: Pki | None = None,
                 live_restore: bool = False) -> None:
        self.root = Path(root)
        self.live_restore = live_restore  # containers keep running while the daemon restarts
        self.name = name
        self.data_root = self.root / "data"
        self.exec_root = f"/tmp/asci-{uuid.uuid4().hex[:6]}"
        self.socket = self.root / "docker.sock"
        self.pidfile = self.root / "docker.pid"
        self.log_path = self.root / "dockerd.log"
        self.tcp_port = tcp_port
        self.pki = pki
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tcp_port}"

    def argv(self) -> list[str]:
        argv = [DOCKERD, "--data-root", str(self.data_root), "--exec-root", self.exec_root,
                "--pidfile", str(self.pidfile), "-H", self.url, "--bridge=none", "--iptables=false",
                "--ip6tables=false"]
        if self.live_restore:
            argv.append("--live-restore")
        if self.tcp_port:
            argv += ["-H", self.tcp_url]
            if self.pki:
                argv += ["--tlsverify", "--tlscacert", str(self.pki.ca), "--tlscert", str(self.pki.server_cert),
                         "--tlskey", str(self.pki.server_key)]
        return argv

    def client(self, timeout: int = 60) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=timeout, version=API_VERSION)

    def answers(self) -> bool:
        try:
            client = self.client(timeout=5)
            try:
                return client.ping()
            finally:
                client.close()
        except Exception:  # noqa: BLE001 - not up (yet)
            return False

    def start(self, timeout: float = 60) -> float:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            began = time.monotonic()
            self.process = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while not self.answers():
            if time.monotonic() - began > timeout or self.process.poll() is not None:
                self.kill()
                raise RuntimeError(f"dockerd {self.name} did not start:\n{self.log_tail()}")
            time.sleep(0.1)
        return time.monotonic() - began

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def remove_containers(self) -> None:
        """Remove every container (a running one makes dockerd's SIGTERM take ~10 s longer)."""
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

    def stop(self, timeout: float = 30) -> float | None:
        """SIGTERM by PID and wait (SIGKILL to its process group after ``timeout``); seconds to exit."""
        if not self.process or self.process.poll() is not None:
            return None
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._wait_for_orphans(5)
        return time.monotonic() - began

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=30)

    def orphans(self) -> list[int]:
        """containerd and shims still running for this daemon (they name its exec root)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].decode(errors="replace").rsplit("/", 1)[-1].startswith("containerd") and any(
                    arg.decode(errors="replace").startswith(self.exec_root + "/") for arg in argv):
                found.append(int(entry))
        return found

    def _wait_for_orphans(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.orphans() and time.monotonic() < deadline:
            time.sleep(0.1)

    def cleanup(self) -> None:
        """Stop; kill by PID what a crash left; unmount under the roots; remove data and exec roots."""
        self.stop()
        for pid in self.orphans():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for mount in _mounts_under(self.exec_root) + _mounts_under(str(self.data_root)):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.data_root, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)


def _mounts_under(prefix: str) -> list[str]:
    points = []
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
                points.append(point)
    return sorted(points, key=len, reverse=True)  # deepest first


GOSSIP_PORT = 7946  # a swarm daemon's gossip (TCP and UDP) on its advertise address; not configurable


def gossip_free_address(candidates: tuple[str, ...]) -> str | None:
    """The first loopback address of ``candidates`` where no swarm daemon's gossip holds port 7946 (None: all taken)."""
    for address in candidates:
        with socket.socket() as sock:
            try:
                sock.bind((address, GOSSIP_PORT))
                return address
            except OSError:
                continue
    return None


def gateway_subnet(address: str) -> str:
    """The small subnet of the swarm gateway bridge of the daemon advertising on loopback ``address``."""
    return f"172.31.{200 + int(address.rsplit('.', 1)[1]) % 50}.0/24"


def create_gateway_bridge(client: docker.DockerClient, bridge_name: str, subnet: str) -> None:
    """Make ``docker_gwbridge`` before the daemon enters a swarm, with a host interface name of its own
    (``bridge_name``, at most 15 characters) and ``subnet``: otherwise the swarm makes it with the
    interface literally named ``docker_gwbridge``, which two daemons of one host cannot both have."""
    from docker.types import IPAMConfig, IPAMPool

    client.networks.create(
        "docker_gwbridge", driver="bridge",
        options={"com.docker.network.bridge.name": bridge_name,
                 "com.docker.network.bridge.enable_icc": "false",
                 "com.docker.network.bridge.enable_ip_masquerade": "false"},
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]))


class SwarmNode:
    """A dockerd of its own made a one-node swarm manager on ``address`` (a loopback address of its own)."""

    def __init__(self, root: Path, address: str = "127.0.0.1") -> None:
        self.daemon = Dockerd(root, name=f"swarm-{address}")
        self.address = address
        self.bridge_name = f"ascigw{uuid.uuid4().hex[:6]}"  # host interface name, at most 15 characters
        self.gw_subnet = gateway_subnet(address)
        self.node_id: str | None = None

    @property
    def url(self) -> str:
        return self.daemon.url

    def start(self) -> "SwarmNode":
        self.daemon.start()
        client = self.daemon.client()
        try:
            create_gateway_bridge(client, self.bridge_name, self.gw_subnet)
            self.node_id = client.swarm.init(advertise_addr=self.address,
                                             listen_addr=f"{self.address}:{free_port_on(self.address)}")
            _remove_ingress(client)
        finally:
            client.close()
        return self

    def cleanup(self) -> None:
        """Leave the swarm (drops its services), remove the gateway bridge, stop and clean the daemon."""
        if self.daemon.process and self.daemon.process.poll() is None:
            client = self.daemon.client()
            try:
                if client.info()["Swarm"]["LocalNodeState"] != "inactive":
                    client.swarm.leave(force=True)
                for container in client.containers.list(all=True, ignore_removed=True):
                    try:
                        container.remove(force=True)
                    except docker.errors.NotFound:
                        pass
                for network in client.networks.list(names=["docker_gwbridge"]):
                    network.remove()
            except docker.errors.APIError as exc:
                print(f"swarm cleanup on {self.address}: {exc}")
            finally:
                client.close()
        self.daemon.cleanup()
        if Path(f"/sys/class/net/{self.bridge_name}").exists():
            subprocess.run(["ip", "link", "delete", self.bridge_name], check=False)


def _remove_ingress(client: docker.DockerClient, timeout: float = 30) -> None:
    """``swarm.init`` returns before the ingress network exists: wait for it, remove it, wait till gone."""
    deadline = time.monotonic() + timeout
    removed = False
    while time.monotonic() < deadline:
        found = [n for n in client.networks.list(names=["ingress"]) if n.name == "ingress"]
        if removed and not found:
            return
        for network in found:
            try:
                network.remove()
                removed = True
            except docker.errors.APIError:
                pass  # its sandbox may still be coming up
        time.sleep(0.2)
    raise TimeoutError(f"the ingress network did not appear and go within {timeout} s")
