"""GPU discovery, container create parameters, Swarm service parameters, resources."""

import pytest
from docker.types import DeviceRequest

from broker import containers
from broker.backends.base import LaunchSpec, NodeRef
from broker.backends.swarm import SwarmBackend
from broker.errors import BadRequest, Unprocessable
from broker.gpus import parse_nvidia_smi
from broker.resources import resources
from builder import ResourceDefaults
from tests.support import NVIDIA_SMI as FIXTURES


def _spec(**extra):
    values = dict(session_id=7, name="asci-x-s7", image="127.0.0.1:5000/env@sha256:" + "a" * 64, port=5907,
                  display=7, password="pw123456", uid=4242, gid=4243, user_name="alice", home_volume="asci-home-alice",
                  home_path="/home/alice", data_path="/srv/data/E1", cpus=2.5, memory_bytes=4 << 30,
                  labels={"asci.session": "7"})
    values.update(extra)
    return LaunchSpec(**values)


def test_recorded_nvidia_smi_outputs_parse():
    gpus = parse_nvidia_smi((FIXTURES / "a100x2.csv").read_text())
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[1]["uuid"] == "GPU-7c9e6679-7425-40de-944b-e07fc1f90ae7" and gpus[0]["memory_mib"] == 40960
    assert parse_nvidia_smi((FIXTURES / "t4x1.csv").read_text())[0]["name"] == "Tesla T4"
    assert parse_nvidia_smi("") == []
    with pytest.raises(BadRequest, match="line 1"):
        parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver")


def test_container_params_isolate_the_session():
    params = containers.create_params(_spec())
    assert params["image"].endswith("@sha256:" + "a" * 64)
    assert params["network_mode"] == "host" and params["user"] == "4242:4243"
    assert params["cap_drop"] == ["ALL"] and params["security_opt"] == ["no-new-privileges"]
    assert params["mem_limit"] == 4 << 30 and params["nano_cpus"] == 2_500_000_000 and params["pids_limit"] == 2048
    assert params["mem_reservation"] == 512 << 20 and params["cpu_shares"] == 256  # the default guarantee
    env = params["environment"]
    assert env["VNC_PORT"] == "5907" and env["VNC_DISPLAY"] == "7" and env["VNC_PASSWORD"] == "pw123456"
    assert env["HOME"] == "/home/alice" and "NVIDIA_VISIBLE_DEVICES" not in env
    data = [m for m in params["mounts"] if m["Target"] == "/data"][0]
    assert data["Source"] == "/srv/data/E1" and data["ReadOnly"] is True
    home = [m for m in params["mounts"] if m["Target"] == "/home/alice"][0]
    assert home["Type"] == "volume" and home["Source"] == "asci-home-alice"
    assert "device_requests" not in params


def test_gpu_session_gets_its_gpu_and_virtualgl():
    params = containers.create_params(_spec(gpu_uuid="GPU-7c9e6679-7425-40de-944b-e07fc1f90ae7",
                                            data_read_only=False))
    [request] = params["device_requests"]
    assert isinstance(request, DeviceRequest) and request["DeviceIDs"] == ["GPU-7c9e6679-7425-40de-944b-e07fc1f90ae7"]
    assert params["environment"]["VGL_DISPLAY"] == "egl"
    assert params["environment"]["NVIDIA_VISIBLE_DEVICES"] == "GPU-7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert [m for m in params["mounts"] if m["Target"] == "/data"][0]["ReadOnly"] is False


class _FakeServices:
    def __init__(self):
        self.created = []

    def create(self, **kwargs):
        self.created.append(kwargs)
        return type("Service", (), {"id": "svc123"})()


class _FakeEngines:
    def __init__(self):
        self.homes = []

    def prepare_home(self, node, spec):
        self.homes.append((node.name, spec.home_volume))


def test_swarm_backend_creates_a_service_pinned_by_node_label():
    client = type("Client", (), {})()
    client.services = _FakeServices()
    engines = _FakeEngines()
    backend = SwarmBackend(client=client, engines=engines)
    state = backend.start(NodeRef("node-a", "unix:///x"), _spec(gpu_uuid="GPU-1", pids_limit=512))
    assert state == {"service_id": "svc123", "service_name": "asci-x-s7"}
    assert engines.homes == [("node-a", "asci-home-alice")]  # the home is made on the node's own engine first
    [params] = client.services.created
    assert params["constraints"] == ["node.labels.asci.node == node-a"] and params["networks"] == ["host"]
    assert params["cap_drop"] == ["ALL"] and params["user"] == "4242:4243" and params["init"] is True
    assert "VNC_PORT=5907" in params["env"] and "VGL_DISPLAY=egl" in params["env"]
    limits = params["resources"]["Limits"]
    assert limits == {"NanoCPUs": 2_500_000_000, "MemoryBytes": 4 << 30, "Pids": 512}
    # no CPU or memory reservation (the broker places, with overcommit; swarm would refuse it): only the GPU
    assert params["resources"]["Reservations"] == {
        "GenericResources": [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]}
    assert params["restart_policy"]["Condition"] == "none"


def test_resources_are_checked(settings):
    got = resources(settings, 4, "8g")
    assert (got.cpu_limit, got.memory_limit_bytes, got.cpu_guarantee, got.memory_guarantee_bytes) == (
        4.0, 8 << 30, 0.25, 512 << 20)
    default = resources(settings)
    assert (default.cpu_limit, default.memory_limit_bytes) == (2.0, 4096 << 20)
    assert resources(settings, 0.1, "300m").cpu_guarantee == 0.1  # a default guarantee never exceeds the limit
    assert resources(settings, None, "300m").memory_guarantee_bytes == 300 << 20
    explicit = resources(settings, 2, "4g", cpu_guarantee="1.5", memory_guarantee="2g")
    assert (explicit.cpu_guarantee, explicit.memory_guarantee_bytes) == (1.5, 2 << 30)
    for cpus, memory in ((0, None), (10_000, None), ("many", None), (None, "1p"), (None, 10), (None, "100000g"),
                         (True, None)):
        with pytest.raises(BadRequest):
            resources(settings, cpus, memory)
    for guarantee in ({"cpu_guarantee": 0}, {"memory_guarantee": "1k"}, {"cpu_guarantee": float("nan")}):
        with pytest.raises(BadRequest, match="guarantee"):
            resources(settings, 2, "4g", **guarantee)
    for guarantee in ({"cpu_guarantee": 3}, {"memory_guarantee": "5g"}):  # well-formed, but above the limit
        with pytest.raises(Unprocessable, match="above the"):
            resources(settings, 2, "4g", **guarantee)


def test_recipe_defaults_sit_between_the_request_and_the_settings(settings):
    recipe = ResourceDefaults(cpu_guarantee=0.5, cpu_limit=4, memory_guarantee_bytes=1 << 30,
                              memory_limit_bytes=64 << 30)
    got = resources(settings, defaults=recipe)
    assert (got.cpu_guarantee, got.cpu_limit, got.memory_guarantee_bytes, got.memory_limit_bytes) == (
        0.5, 4.0, 1 << 30, 64 << 30)
    asked = resources(settings, cpus=1, memory_guarantee="256m", defaults=recipe)
    assert (asked.cpu_guarantee, asked.cpu_limit, asked.memory_guarantee_bytes) == (0.5, 1.0, 256 << 20)
    capped = resources(settings.replace(session_max_cpus=2, session_max_memory_mb=8192), defaults=recipe)
    assert (capped.cpu_limit, capped.memory_limit_bytes) == (2.0, 8 << 30)  # per-user caps bound the recipe too
