"""GPU discovery, container create parameters, Swarm service parameters, resources."""

import pytest
from docker.types import DeviceRequest

from broker import containers
from broker.backends.base import LaunchSpec, NodeRef
from broker.backends.swarm import SwarmBackend
from asci.config import load_settings
from asci.errors import ConfigError
from broker.errors import BackendError, BadRequest, Unprocessable
from broker.gpus import parse_nvidia_smi
from broker.resources import resources
from builder import ResourceDefaults
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
    assert params["mem_reservation"] == 512 << 20 and params["cpu_shares"] == 256  # the default guarantee
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


class _FakeEngines:
    def __init__(self, networks=()):
        self.homes = []
        self.networks = set(networks)

    def prepare_home(self, node, spec):
        self.homes.append((node.name, spec.home_volume))

    def has_network(self, node, name):
        return name in self.networks


def test_swarm_backend_creates_an_isolated_service_pinned_by_node_label():
    client = type("Client", (), {})()
    client.services = _FakeServices()
    engines = _FakeEngines()
    backend = SwarmBackend(client=client, engines=engines)
    state = backend.start(NodeRef("node-a", "unix:///x"), _spec(gpu_uuid="GPU-1", pids_limit=512))
    assert state == {"service_id": "svc123", "service_name": "asci-x-s7"}
    assert engines.homes == [("node-a", "asci-home-alice")]  # the home is made on the node's own engine first
    [params] = client.services.created
    assert params["constraints"] == ["node.labels.asci.node == node-a"]
    # no network: no "networks" at all (a service cannot name "none"), no virtual IP, no published port
    assert "networks" not in params and params["endpoint_spec"]["Mode"] == "dnsrr"
    assert "Ports" not in params["endpoint_spec"] and params["hostname"] == "asci-x-s7"
    assert params["cap_drop"] == ["ALL"] and params["user"] == "4242:4243" and params["init"] is True
    env = dict(item.split("=", 1) for item in params["env"])
    assert env["VNC_SOCKET"] == "/run/asci/vnc/vnc.sock" and env["VNC_PASSWD_FILE"] == "/run/asci/secret/passwd"
    assert not [key for key in env if "PASSWORD" in key] and "VNC_PORT" not in env
    assert env["VGL_DISPLAY"] == "egl" and env["NVIDIA_VISIBLE_DEVICES"] == "GPU-1"
    limits = params["resources"]["Limits"]
    assert limits == {"NanoCPUs": 2_500_000_000, "MemoryBytes": 4 << 30, "Pids": 512}
    # no CPU or memory reservation (the broker places, with overcommit; swarm would refuse it): only the GPU
    assert params["resources"]["Reservations"] == {
        "GenericResources": [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}]}
    assert params["restart_policy"]["Condition"] == "none"
    # the Docker backend's mounts: home, /data, the session's socket folder, its password folder (read-only),
    # its hosts file, and /dev/shm as a tmpfs of the Docker backend's shm size
    mounts = {m["Target"]: m for m in params["mounts"]}
    assert {key: mounts[key] for key in mounts if key != "/dev/shm"} == {
        m["Target"]: m for m in containers.mounts(_spec())}
    vnc, secret = mounts["/run/asci/vnc"], mounts["/run/asci/secret"]
    assert (vnc["Type"], vnc["Source"], vnc["ReadOnly"]) == ("bind", "/run/asci-test/x-s7/vnc", False)
    assert (secret["Type"], secret["Source"], secret["ReadOnly"]) == ("bind", "/run/asci-test/x-s7/secret", True)
    assert (mounts["/etc/hosts"]["Source"], mounts["/etc/hosts"]["ReadOnly"]) == ("/run/asci-test/x-s7/hosts", True)
    assert mounts["/dev/shm"]["Type"] == "tmpfs"
    assert mounts["/dev/shm"]["TmpfsOptions"]["SizeBytes"] == containers.shm_bytes(_spec()) == 1 << 30


def test_swarm_desktops_on_a_facility_network_and_the_default_bridge_refused():
    client = type("Client", (), {})()
    client.services = _FakeServices()
    plain = SwarmBackend(client=client, engines=_FakeEngines()).service_params(
        NodeRef("node-a", "unix:///x"), _spec(network="facility"))
    assert plain["networks"] == ["facility"] and "NVIDIA_VISIBLE_DEVICES=void" in plain["env"]
    assert "/etc/hosts" not in {m["Target"] for m in plain["mounts"]}  # Docker writes it on a network
    # a node whose engine has a default bridge: a service without networks would join it
    bridged = SwarmBackend(client=client, engines=_FakeEngines(networks={"bridge"}))
    with pytest.raises(BackendError, match="--bridge=none"):
        bridged.start(NodeRef("node-a", "unix:///x"), _spec())
    assert client.services.created == []
    bridged.start(NodeRef("node-a", "unix:///x"), _spec(network="facility"))  # a named network is fine
    assert len(client.services.created) == 1


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
