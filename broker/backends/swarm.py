"""Sessions as Docker Swarm services (one replica, pinned to the chosen node).

The first distributed-engine backend. Each session is a service with one
task, constrained to ``node.hostname == <node name>``, on the ``host``
network, with the same environment, user, capabilities, limits, mounts and
labels as a Docker-backend container. Requires docker-py's ``ContainerSpec``
support for ``cap_drop`` (docker >= 7).

Tested with a fake client (``tests/unit/broker/test_swarm_backend.py``); it is
not run against a live swarm in this project's test suite.
"""

from __future__ import annotations

import docker
from docker.errors import APIError, NotFound
from docker.types import EndpointSpec, Resources, RestartPolicy

from broker import containers
from broker.backends.base import Backend, LaunchSpec, Managed, NodeRef
from broker.errors import BackendError, NodeUnreachable


class SwarmBackend(Backend):
    """Docker Swarm services through one manager endpoint."""

    def __init__(self, manager_url: str = "unix:///var/run/docker.sock", client=None) -> None:
        self.manager_url = manager_url
        self._client = client

    @property
    def client(self):
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.manager_url, timeout=30)
        return self._client

    def service_params(self, node: NodeRef, spec: LaunchSpec) -> dict:
        """Keyword arguments for ``client.services.create``."""
        env = containers.environment(spec)
        params = {
            "image": spec.image,
            "name": spec.name,
            "env": [f"{key}={value}" for key, value in env.items()],
            "user": f"{spec.uid}:{spec.gid}",
            "labels": dict(spec.labels),
            "container_labels": dict(spec.labels),
            "constraints": [f"node.hostname == {node.name}"],
            "networks": ["host"],
            "endpoint_spec": EndpointSpec(mode="dnsrr"),
            "mounts": containers.mounts(spec),
            "resources": Resources(cpu_limit=int(spec.cpus * 1e9), mem_limit=spec.memory_bytes,
                                   generic_resources={"NVIDIA-GPU": 1} if spec.gpu_uuid else None),
            "restart_policy": RestartPolicy(condition="none"),
            "cap_drop": ["ALL"],
            "init": True,
        }
        return params

    def ping(self, node: NodeRef) -> None:
        try:
            nodes = self.client.nodes.list(filters={"name": node.name})
        except Exception as exc:  # noqa: BLE001
            raise NodeUnreachable(f"swarm manager {self.manager_url} does not answer: {exc}") from None
        if not nodes or nodes[0].attrs.get("Status", {}).get("State") != "ready":
            raise NodeUnreachable(f"swarm node {node.name} is not ready")

    def ensure_image(self, node: NodeRef, image: str) -> bool:
        return False  # swarm pulls the digest on the node when the task starts

    def start(self, node: NodeRef, spec: LaunchSpec) -> dict:
        try:
            service = self.client.services.create(**self.service_params(node, spec))
        except APIError as exc:
            raise BackendError(f"swarm: creating service {spec.name} failed: {exc.explanation}") from None
        return {"service_id": service.id, "service_name": spec.name}

    def stop(self, node: NodeRef, state: dict) -> None:
        try:
            self.client.services.get(state.get("service_id") or state["service_name"]).remove()
        except (NotFound, KeyError):
            return
        except APIError as exc:
            raise BackendError(f"swarm: removing service failed: {exc.explanation}") from None

    def poll(self, node: NodeRef, state: dict) -> str | None:
        try:
            service = self.client.services.get(state.get("service_id") or state["service_name"])
        except (NotFound, KeyError):
            return "missing"
        tasks = service.tasks()
        if not tasks:
            return None  # not scheduled yet
        latest = max(tasks, key=lambda task: task.get("CreatedAt", ""))
        status = latest.get("Status", {}).get("State")
        if status in {"new", "pending", "assigned", "accepted", "preparing", "starting", "running"}:
            return None
        return f"task {status}: {latest.get('Status', {}).get('Err', '')}".strip()

    def list_managed(self, node: NodeRef, instance: str) -> list[Managed]:
        filters = {"label": [f"{containers.MANAGED}=1", f"{containers.LABEL_INSTANCE}={instance}"]}
        found = []
        for service in self.client.services.list(filters=filters):
            labels = service.attrs.get("Spec", {}).get("Labels", {})
            if f"node.hostname == {node.name}" not in service.attrs.get("Spec", {}).get("TaskTemplate", {}).get(
                    "Placement", {}).get("Constraints", []):
                continue
            try:
                session_id = int(labels.get(containers.LABEL_SESSION, ""))
            except ValueError:
                continue
            found.append(Managed(session_id, service.id, service.name, self.poll(node, {"service_id": service.id}) is None,
                                 labels))
        return found
