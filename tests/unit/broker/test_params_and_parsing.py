"""GPU discovery, container create parameters, Swarm service parameters (and its refusal), resources."""

import pytest
from docker.types import DeviceRequest

from broker import containers
from broker.backends.base import LaunchSpec, NodeRef
from broker.backends.swarm import SwarmBackend
from asci.config import load_settings
from asci.errors import ConfigError
from broker.errors import BackendError, BadRequest
from broker.gpus import parse_nvidia_smi
from broker.resources import resources
from tests.support import NVIDIA_SMI as FIXTURES


def _spec(**extra):
    values = dict(session_id=7, name="asci-x-s7", image="127.0.0.1:5000/env@sha256:" + "a" * 64,
                  run_dir="/run/asci-test/x-s7", uid=4242, gid=4243, user_name="alice", home_volume="asci-home-alice",
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
    # no network: a namespace of its own from the runtime (loopback only), never the node's
    assert params["network_disabled"] is True and "network_mode" not in params and params["user"] == "4242:4243"
    assert params["hostname"] == "asci-x-s7"
    assert params["cap_drop"] == ["ALL"] and params["security_opt"] == ["no-new-privileges"]
    assert params["mem_limit"] == params["memswap_limit"] == 4 << 30 and params["nano_cpus"] == 2_500_000_000
    assert params["pids_limit"] == 2048 and "ports" not in params
    env = params["environment"]
    assert env["VNC_SOCKET"] == "/run/asci/vnc/vnc.sock" and env["VNC_PASSWD_FILE"] == "/run/asci/secret/passwd"
    assert not [key for key, value in env.items() if "PASSWORD" in key or value == "pw123456"]
    assert env["HOME"] == "/home/alice" and env["NVIDIA_VISIBLE_DEVICES"] == "void"  # never the image's "all"
    assert "VGL_DISPLAY" not in env and "NVIDIA_DRIVER_CAPABILITIES" not in env
    mounts = {m["Target"]: m for m in params["mounts"]}
    assert mounts["/data"]["Source"] == "/srv/data/E1" and mounts["/data"]["ReadOnly"] is True
    assert mounts["/home/alice"]["Type"] == "volume" and mounts["/home/alice"]["Source"] == "asci-home-alice"
    vnc, secret = mounts["/run/asci/vnc"], mounts["/run/asci/secret"]
    assert (vnc["Type"], vnc["Source"], vnc["ReadOnly"]) == ("bind", "/run/asci-test/x-s7/vnc", False)
    assert (secret["Type"], secret["Source"], secret["ReadOnly"]) == ("bind", "/run/asci-test/x-s7/secret", True)
    assert (mounts["/etc/hosts"]["Source"], mounts["/etc/hosts"]["ReadOnly"]) == ("/run/asci-test/x-s7/hosts", True)
    assert "device_requests" not in params


def test_a_facility_network_replaces_none_but_never_the_hosts():
    params = containers.create_params(_spec(network="asci-desktops"))
    assert params["network_mode"] == "asci-desktops" and "network_disabled" not in params
    assert "/etc/hosts" not in {m["Target"] for m in params["mounts"]}  # Docker writes it on a network
    for bad in ("host", "bridge", "default", "container:abc", "../x", ""):
        with pytest.raises(ConfigError, match="ASCI_SESSION_NETWORK"):
            load_settings({"ASCI_SESSION_NETWORK": bad})
    assert load_settings({"ASCI_SESSION_NETWORK": "asci-desktops"}).session_network == "asci-desktops"
    assert load_settings({}).session_network == "none"


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


def test_swarm_refuses_to_start_a_desktop_it_cannot_harden_and_creates_nothing():
    client = type("Client", (), {})()
    client.services = _FakeServices()
    backend = SwarmBackend(client=client)
    with pytest.raises(BackendError) as refused:
        backend.start(NodeRef("node-a", "unix:///x"), _spec())
    message = str(refused.value)
    for missing in ("no-new-privileges", "swap limit", "network mode none"):
        assert missing in message
    assert 'broker_backend = "docker"' in message
    assert client.services.created == []


def test_swarm_service_params_carry_what_the_service_api_can_express():
    params = SwarmBackend(client=object()).service_params(NodeRef("node-a", "unix:///x"), _spec(gpu_uuid="GPU-1"))
    assert params["constraints"] == ["node.hostname == node-a"] and params["networks"] == []
    assert params["cap_drop"] == ["ALL"] and params["user"] == "4242:4243" and params["init"] is True
    assert "VGL_DISPLAY=egl" in params["env"] and "NVIDIA_VISIBLE_DEVICES=GPU-1" in params["env"]
    assert not [item for item in params["env"] if "PASSWORD" in item.split("=")[0]]
    limits = params["resources"]["Limits"]
    assert limits["MemoryBytes"] == 4 << 30 and limits["Pids"] == 2048
    mounts = {m["Target"]: m for m in params["mounts"]}
    assert mounts["/dev/shm"]["Type"] == "tmpfs" and mounts["/dev/shm"]["TmpfsOptions"]["SizeBytes"] == 1 << 30
    assert mounts["/run/asci/secret"]["ReadOnly"] is True and mounts["/run/asci/vnc"]["Source"].endswith("/vnc")
    plain = SwarmBackend(client=object()).service_params(NodeRef("node-a", "unix:///x"), _spec(network="facility"))
    assert plain["networks"] == ["facility"] and "NVIDIA_VISIBLE_DEVICES=void" in plain["env"]


def test_resources_are_checked(settings):
    assert resources(settings, 4, "8g") == (4.0, 8 << 30)
    assert resources(settings, None, None) == (2.0, 4096 << 20)
    for cpus, memory in ((0, None), (10_000, None), ("many", None), (None, "1p"), (None, 10), (None, "100000g"),
                         (True, None)):
        with pytest.raises(BadRequest):
            resources(settings, cpus, memory)
