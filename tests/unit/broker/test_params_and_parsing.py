"""GPU discovery, container create parameters, Swarm service parameters, resources."""

import pytest
from docker.types import DeviceRequest

from broker import containers
from broker.backends.base import LaunchSpec, NodeRef
from broker.backends.swarm import SwarmBackend
from broker.errors import BadRequest
from broker.gpus import parse_nvidia_smi
from broker.resources import resources
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


def test_swarm_backend_creates_a_pinned_host_network_service():
    client = type("Client", (), {})()
    client.services = _FakeServices()
    backend = SwarmBackend(client=client)
    state = backend.start(NodeRef("node-a", "unix:///x"), _spec(gpu_uuid="GPU-1"))
    assert state == {"service_id": "svc123", "service_name": "asci-x-s7"}
    [params] = client.services.created
    assert params["constraints"] == ["node.hostname == node-a"] and params["networks"] == ["host"]
    assert params["cap_drop"] == ["ALL"] and params["user"] == "4242:4243"
    assert "VNC_PORT=5907" in params["env"] and "VGL_DISPLAY=egl" in params["env"]
    assert params["resources"]["Limits"]["MemoryBytes"] == 4 << 30


def test_resources_are_checked(settings):
    assert resources(settings, 4, "8g") == (4.0, 8 << 30)
    assert resources(settings, None, None) == (2.0, 4096 << 20)
    for cpus, memory in ((0, None), (10_000, None), ("many", None), (None, "1p"), (None, 10), (None, "100000g"),
                         (True, None)):
        with pytest.raises(BadRequest):
            resources(settings, cpus, memory)
