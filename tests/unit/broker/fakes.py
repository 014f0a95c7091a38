"""A fake backend and a world of users, experiment, environment version and nodes for broker tests."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

from asci import accounts
from asci.db import session_scope
from broker import containers
from broker.backends.base import Backend, Managed, NodeRef
from broker.errors import NodeUnreachable
from broker.gpus import parse_nvidia_smi
from broker.models import Experiment, ExperimentEnvironment, ExperimentMember, Node
from builder.models import SUCCEEDED, Environment, EnvironmentVersion

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "nvidia-smi"


class FakeBackend(Backend):
    """Records create parameters instead of starting containers."""

    def __init__(self) -> None:
        self.created: dict[str, dict] = {}
        self.running: dict[str, tuple[str, dict]] = {}
        self.down: set[str] = set()
        self.lock = threading.Lock()

    def _check(self, node: NodeRef) -> None:
        if node.name in self.down:
            raise NodeUnreachable(f"node {node.name} does not answer")

    def ping(self, node):
        self._check(node)

    def ensure_image(self, node, image):
        self._check(node)
        return False

    def start(self, node, spec):
        self._check(node)
        params = containers.create_params(spec)
        cid = uuid.uuid4().hex
        with self.lock:
            self.created[cid] = {"node": node.name, **params}
            self.running[cid] = (node.name, params)
        return {"container_id": cid, "container_name": spec.name}

    def stop(self, node, state):
        self._check(node)
        with self.lock:
            self.running.pop(state.get("container_id"), None)

    def poll(self, node, state):
        self._check(node)
        return None if state.get("container_id") in self.running else "missing"

    def list_managed(self, node, instance):
        self._check(node)
        return [Managed(int(p["labels"][containers.LABEL_SESSION]), cid, p["name"], True, p["labels"])
                for cid, (name, p) in self.running.items() if name == node.name
                and p["labels"].get(containers.LABEL_INSTANCE) == instance]


def always_ready(host, port):
    return True


def make_world(settings, nodes: list[dict], image: str = "127.0.0.1:5000/asci-test:v1",
               digest: str = "sha256:" + "0" * 64, data_path: str = "/tmp") -> dict:
    """Users alice/bob (members of E1/E2) and root (admin), environment 'mx' version v1, nodes."""
    suffix = uuid.uuid4().hex[:6]
    with session_scope(settings) as db:
        alice = accounts.create_user(db, f"alice-{suffix}", uid=4242, gid=4242)
        bob = accounts.create_user(db, f"bob-{suffix}")
        root = accounts.create_user(db, f"root-{suffix}", is_admin=True)
        tokens = {name: accounts.issue_token(db, user) for name, user in
                  (("alice", alice), ("bob", bob), ("root", root))}
        env = Environment(name=f"mx-{suffix}", current_version="v1")
        db.add(env)
        db.flush()
        repository, tag = image.rsplit(":", 1)
        db.add(EnvironmentVersion(environment_id=env.id, version="v1", status=SUCCEEDED, image_reference=image,
                                  image_digest=digest))
        db.add(EnvironmentVersion(environment_id=env.id, version="v0", status="failed", image_reference=image,
                                  image_digest=""))
        e1 = Experiment(code=f"E1-{suffix}", title="one", data_path=data_path)
        e2 = Experiment(code=f"E2-{suffix}", title="two", data_path=data_path)
        db.add_all([e1, e2])
        db.flush()
        db.add_all([ExperimentMember(experiment_id=e1.id, user_id=alice.id),
                    ExperimentMember(experiment_id=e2.id, user_id=bob.id),
                    ExperimentEnvironment(experiment_id=e1.id, environment_id=env.id),
                    ExperimentEnvironment(experiment_id=e2.id, environment_id=env.id)])
        for spec in nodes:
            spec = dict(spec)
            smi = spec.pop("nvidia_smi", None)
            db.add(Node(gpus=parse_nvidia_smi((FIXTURES / smi).read_text()) if smi else [], **spec))
        ids = {"alice": alice.id, "bob": bob.id, "root": root.id}
        return {"env": env.name, "e1": e1.code, "e2": e2.code, "tokens": tokens, "ids": ids, "suffix": suffix,
                "names": {"alice": alice.username, "bob": bob.username, "root": root.username}}


def user(settings, world, who: str):
    from asci.accounts import User

    with session_scope(settings) as db:
        row = db.get(User, world["ids"][who])
        db.expunge(row)
        return row
