"""Sessions as Docker Swarm services: one replica each, pinned to the node the broker chose.

The distributed-engine backend, for a facility whose nodes form a swarm. The broker talks to one
manager (``manager_url``) for services and node state, and to each node's own engine (the node's
``docker_url``, through :class:`DockerBackend`) for what only that engine can do: pulling the image
before the task starts, creating the user's home volume owned by the session's uid, running commands
in a task's container and reading its logs.

Each ASCI node is a swarm node labelled ``asci.node=<name>``: on first use the backend asks the
node's engine for its swarm node id (``docker info``) and sets the label through the manager. A
session's service is constrained to that label (every daemon may report the same host name, so
``node.hostname`` cannot tell nodes apart), restart policy none (a task that dies is a lost
session, never a fresh desktop). Guarantees are not given to Swarm as reservations: the broker
places sessions itself, with overcommit, and Swarm would refuse a task whose reservations exceed
the node. Capacity is the swarm node's ``Description.Resources``.

Isolation, as with the Docker backend (``broker.containers``): the same environment (VNC on the
session's Unix socket, the password file, ``NVIDIA_VISIBLE_DEVICES=void`` unless a GPU), the same
mounts (home, ``/data``, the session folder's ``vnc/`` and read-only ``secret/``, and its hosts file),
the user's uid:gid, every capability dropped, init, CPU, memory and pids limits (``Limits.Pids``),
``/dev/shm`` as a tmpfs of the Docker backend's size, and the same readiness proof (the broker locks
the socket folder and proves the server by ``SO_PEERCRED`` against the task's container id). The
session folder is the node side's (``broker.node_side``), as with the Docker backend: a node without
an agent shares this machine's filesystem, so its folder is here; a node registered with ``--agent``
(a worker on another machine) gets its folder from its agent, on the worker, and the service's mounts
name the worker's paths the agent returned (``LaunchSpec.run_dir``, the home under the home root); the
agent proves the task's server there and relays its VNC bytes. What the service API (Engine API 1.41,
docker-py 7.1) cannot express, and how each holds anyway:

* no-new-privileges: no ContainerSpec field. The desktop entrypoint sets ``no_new_privs`` on itself
  before it starts anything (``setpriv --no-new-privs``), so Xvnc, the session and everything they
  start carry it, on every backend (the live test reads ``NoNewPrivs`` of the task's processes). Only
  the init (docker-init, which starts the entrypoint and nothing else) and commands run through
  ``exec`` by the platform (the smoke gate's checks) lack it.
* network mode ``none``: a service cannot name it (moby/moby#44403). A desktop without a facility
  network gets no ``networks``, ``dnsrr`` endpoint mode and no published ports; on a node whose daemon
  has no default bridge (``dockerd --bridge=none``) its task then has only ``lo``. ``start`` refuses
  such a desktop on a node whose engine has a ``bridge`` network (the task would join it).
* the swap limit (``MemorySwap`` equal to the memory limit): services have no field for it, so a
  swarm desktop may use swap as the engine allows (by default as much again as its memory limit, where
  the kernel accounts swap). This is the one piece of the hardening that does not hold on Swarm: see
  the README's known limits.

Tested against a real one-node swarm (``tests/integration/broker/test_swarm_live.py``), a swarm of
two machines whose worker is a far node reached through its agent
(``tests/integration/broker/test_swarm_far.py``) and a fake manager
(``tests/unit/broker/test_swarm_backend.py``).
"""

from __future__ import annotations

import threading
import time

from docker.errors import APIError, DockerException, NotFound
from docker.types import EndpointSpec, Mount, Resources, RestartPolicy

from asci.progress import LogSink
from broker import containers, rundir
from broker.backends.base import Backend, Capacity, LaunchSpec, Managed, NodeRef
from broker.backends.docker import DockerBackend, docker_client
from broker.errors import BackendError, NodeUnreachable

NODE_LABEL = "asci.node"
WAITING = {"new", "allocated", "pending", "assigned", "accepted", "ready", "preparing", "starting"}


def constraint(node: NodeRef) -> str:
    """The placement constraint pinning a service to ``node``."""
    return f"node.labels.{NODE_LABEL} == {node.name}"


class SwarmBackend(Backend):
    """Docker Swarm services through one manager endpoint; node engines for images, homes, exec, logs."""

    def __init__(self, manager_url: str = "unix:///var/run/docker.sock", client=None,
                 engines: DockerBackend | None = None, timeout: int = 30) -> None:
        self.manager = NodeRef("swarm-manager", manager_url)
        self.manager_url = manager_url
        self.timeout = timeout
        self._client = client
        self.engines = engines or DockerBackend(timeout=timeout)
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                self._client = docker_client(self.manager, self.timeout)
            return self._client

    def _manager(self, what: str, function, *args, **kwargs):
        """Call the manager; NotFound passes through, no answer is NodeUnreachable, a refusal BackendError."""
        try:
            return function(*args, **kwargs)
        except NotFound:
            raise
        except APIError as exc:
            raise BackendError(f"swarm: {what} failed: {exc.explanation or exc}") from None
        except (DockerException, OSError) as exc:  # requests' errors are OSErrors
            raise NodeUnreachable(f"swarm manager {self.manager_url} does not answer ({what}): "
                                  f"{exc.__class__.__name__}") from None

    # ------------------------------------------------------------ nodes
    def swarm_node(self, node: NodeRef) -> dict:
        """The swarm node of ``node`` (its attributes), labelled ``asci.node=<name>`` on first use."""
        nodes = self._manager("list nodes", self.client.nodes.list)
        for found in nodes:
            if (found.attrs.get("Spec", {}).get("Labels") or {}).get(NODE_LABEL) == node.name:
                return found.attrs
        info = self.engines.info(node)
        node_id = (info.get("Swarm") or {}).get("NodeID") or ""
        if not node_id:
            raise NodeUnreachable(f"node {node.name}: its engine ({node.docker_url}) is not part of a swarm")
        for found in nodes:
            if found.id == node_id:
                taken = (found.attrs.get("Spec", {}).get("Labels") or {}).get(NODE_LABEL)
                if taken:
                    raise BackendError(f"node {node.name}: swarm node {node_id} is ASCI node {taken} already")
                spec = dict(found.attrs.get("Spec") or {})
                spec["Labels"] = {**(spec.get("Labels") or {}), NODE_LABEL: node.name}
                self._manager("label node", found.update, spec)
                found.reload()
                return found.attrs
        raise NodeUnreachable(f"node {node.name}: swarm node {node_id} is not known to the manager {self.manager_url}")

    def ping(self, node: NodeRef) -> None:
        self.engines.ping(node)
        attrs = self.swarm_node(node)
        state = attrs.get("Status", {}).get("State")
        availability = attrs.get("Spec", {}).get("Availability", "active")
        if state != "ready" or availability != "active":
            raise NodeUnreachable(f"swarm node {node.name} is {state}, availability {availability}")

    def capacity(self, node: NodeRef) -> Capacity:
        resources = self.swarm_node(node).get("Description", {}).get("Resources", {})
        return Capacity(resources.get("NanoCPUs", 0) / 1e9, int(resources.get("MemoryBytes", 0)))

    def ensure_image(self, node: NodeRef, image: str, log: LogSink | None = None) -> bool:
        return self.engines.ensure_image(node, image, log)  # on the node itself, so the task starts at once

    # ------------------------------------------------------------ services
    def service_params(self, node: NodeRef, spec: LaunchSpec) -> dict:
        """Keyword arguments for ``client.services.create``: the Docker backend's isolation, as far as a
        service can carry it (see the module's docstring for what it cannot, and how that holds)."""
        resources = Resources(cpu_limit=int(spec.cpus * 1e9), mem_limit=spec.memory_bytes,
                              generic_resources={"NVIDIA-GPU": 1} if spec.gpu_uuid else None)
        resources["Limits"]["Pids"] = spec.pids_limit  # API 1.41; docker-py's Resources has no argument for it
        shm = Mount(target="/dev/shm", source="", type="tmpfs", tmpfs_size=containers.shm_bytes(spec))
        params = {
            "image": spec.image,
            "name": spec.name,
            "hostname": rundir.hostname_for(spec.name),
            "env": [f"{key}={value}" for key, value in containers.environment(spec).items()],
            "user": f"{spec.uid}:{spec.gid}",
            "labels": dict(spec.labels),
            "container_labels": dict(spec.labels),
            "constraints": [constraint(node)],
            "endpoint_spec": EndpointSpec(mode="dnsrr"),  # no virtual IP, no published port
            "mounts": [*containers.mounts(spec), shm],
            "resources": resources,
            "restart_policy": RestartPolicy(condition="none"),
            "cap_drop": ["ALL"],
            "init": True,
        }
        if not containers.isolated(spec):
            params["networks"] = [spec.network]  # the facility's network for desktops
        return params

    def _refuse_default_bridge(self, node: NodeRef, spec: LaunchSpec) -> None:
        """A desktop without a network must not land on a node whose engine has a default bridge: a task
        without networks would join it (outbound access, the node's other containers)."""
        if not containers.isolated(spec):
            return
        if self.engines.has_network(node, "bridge"):
            raise BackendError(f"node {node.name}: its engine has a default bridge network, which a desktop "
                               "service without networks would join; run the node's dockerd with --bridge=none "
                               "(or name a facility network for desktops in session_network)")

    def start(self, node: NodeRef, spec: LaunchSpec) -> dict:
        self._refuse_default_bridge(node, spec)
        self.engines.prepare_home(node, spec)
        service = self._manager(f"create service {spec.name}", self.client.services.create,
                                **self.service_params(node, spec))
        return {"service_id": service.id, "service_name": spec.name}

    @staticmethod
    def _ident(state: dict) -> str:
        return state.get("service_id") or state.get("service_name") or ""

    def stop(self, node: NodeRef, state: dict, wait_s: float = 20) -> None:
        """Remove the service, then wait (up to ``wait_s``) until the node removed its task's container,
        so that what used it (the home volume) is free again, as with the Docker backend."""
        ident = self._ident(state)
        if not ident:
            return
        try:
            container = self._container(state)
        except BackendError:
            container = None
        try:
            service = self._manager("inspect service", self.client.services.get, ident)
            self._manager("remove service", service.remove)
        except NotFound:
            return
        deadline = time.monotonic() + wait_s
        try:
            while container and time.monotonic() < deadline and self.engines.poll(node, container) != "missing":
                time.sleep(0.1)
        except BackendError:
            pass  # the node's engine does not answer: the manager has the service's removal in hand

    def _latest_task(self, ident: str) -> dict | None:
        service = self._manager("inspect service", self.client.services.get, ident)
        tasks = self._manager("list tasks", service.tasks)
        return max(tasks, key=lambda task: task.get("CreatedAt", "")) if tasks else None

    def poll(self, node: NodeRef, state: dict) -> str | None:
        ident = self._ident(state)
        if not ident:
            return "missing"
        try:
            task = self._latest_task(ident)
        except NotFound:
            return "missing"
        if task is None:
            return None  # not scheduled yet
        status = task.get("Status", {})
        if status.get("State") == "running" or status.get("State") in WAITING:
            return None
        return f"task {status.get('State')}: {status.get('Err') or status.get('Message', '')}".strip()

    def list_managed(self, node: NodeRef, instance: str) -> list[Managed]:
        filters = {"label": [f"{containers.MANAGED}=1", f"{containers.LABEL_INSTANCE}={instance}"]}
        found = []
        for service in self._manager("list services", self.client.services.list, filters=filters):
            spec = service.attrs.get("Spec", {})
            if constraint(node) not in spec.get("TaskTemplate", {}).get("Placement", {}).get("Constraints", []):
                continue
            labels = spec.get("Labels", {})
            try:
                session_id = int(labels.get(containers.LABEL_SESSION, ""))
            except ValueError:
                continue
            state = {"service_id": service.id, "service_name": service.name}
            found.append(Managed(session_id, state, self.poll(node, state) is None, labels))
        return found

    def _container(self, state: dict) -> dict:
        """The Docker-backend state of the container of the service's task (on the node's engine)."""
        try:
            task = self._latest_task(self._ident(state))
        except NotFound:
            raise BackendError("swarm: the session's service is gone") from None
        container_id = ((task or {}).get("Status", {}).get("ContainerStatus") or {}).get("ContainerID")
        if not container_id:
            raise BackendError("swarm: the session's task has no container")
        return {"container_id": container_id}

    def container_id(self, node: NodeRef, state: dict) -> str:
        """The id of the container of the service's task ("" while it has none), for the readiness proof."""
        try:
            return self._container(state)["container_id"]
        except (BackendError, NotFound):
            return ""

    def exec(self, node: NodeRef, state: dict, command: list[str], user: str, environment: dict[str, str]
             ) -> tuple[int, str]:
        return self.engines.exec(node, self._container(state), command, user, environment)

    def file_channel(self, node: NodeRef, state: dict):
        """The file channel of the task's container, on its node's engine."""
        return self.engines.file_channel(node, self._container(state))

    def logs(self, node: NodeRef, state: dict, tail: int = 50) -> str:
        try:
            task = self._latest_task(self._ident(state)) or {}
            container = self._container(state)
        except (BackendError, NotFound):
            return ""
        status = task.get("Status", {})
        return (self.engines.logs(node, container, tail=tail)
                + f"\ntask {status.get('State')}: {status.get('Err') or status.get('Message', '')}")

    def remove_volume(self, node: NodeRef, name: str) -> None:
        self.engines.remove_volume(node, name)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        self.engines.close()
