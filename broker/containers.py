"""The create parameters of a session container (plain data, inspected by tests).

Exact image digest; host networking with the VNC server on the allocated
port; a random VNC password passed through the environment; the user's
uid:gid; every capability dropped, no-new-privileges, memory, CPU and pids
limits, the guarantee as CPU shares (1024 per CPU) and a memory reservation; the experiment's data at ``/data`` (read-only unless configured); a
per-user named volume as home; labels naming session, user, environment and
version; and for a GPU session a device request for that GPU's UUID plus the
VirtualGL environment.
"""

from __future__ import annotations

from docker.types import DeviceRequest, Mount

from broker.backends.base import LaunchSpec

MANAGED = "asci.managed"
LABEL_SESSION, LABEL_INSTANCE = "asci.session", "asci.broker"


def environment(spec: LaunchSpec) -> dict[str, str]:
    """The desktop image's environment contract plus VirtualGL for GPU sessions."""
    env = {
        "VNC_PORT": str(spec.port),
        "VNC_DISPLAY": str(spec.display),
        "VNC_PASSWORD": spec.password,
        "VNC_LISTEN": "127.0.0.1",
        "ASCI_USER_NAME": spec.user_name,
        "ASCI_SESSION": str(spec.session_id),
        "HOME": spec.home_path,
        "USER": spec.user_name,
    }
    if spec.gpu_uuid:
        env.update({"NVIDIA_VISIBLE_DEVICES": spec.gpu_uuid, "NVIDIA_DRIVER_CAPABILITIES": "all",
                    "VGL_DISPLAY": "egl"})
    return env


def mounts(spec: LaunchSpec) -> list[Mount]:
    """Home volume, and the experiment's data at /data."""
    result = [Mount(target=spec.home_path, source=spec.home_volume, type="volume")]
    if spec.data_path:
        result.append(Mount(target="/data", source=spec.data_path, type="bind", read_only=spec.data_read_only))
    return result


def create_params(spec: LaunchSpec) -> dict:
    """Keyword arguments for ``docker.containers.create``."""
    params = {
        "image": spec.image,
        "name": spec.name,
        "detach": True,
        "network_mode": "host",
        "environment": environment(spec),
        "user": f"{spec.uid}:{spec.gid}",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "mem_limit": spec.memory_bytes,
        "memswap_limit": spec.memory_bytes,
        "nano_cpus": int(spec.cpus * 1e9),
        "cpu_shares": max(2, int(spec.cpu_guarantee * 1024)),
        "mem_reservation": spec.memory_guarantee_bytes,
        "pids_limit": spec.pids_limit,
        "shm_size": min(spec.memory_bytes // 4, 1 << 30),
        "mounts": mounts(spec),
        "labels": dict(spec.labels),
        "init": True,
        "restart_policy": {"Name": "no"},
    }
    if spec.gpu_uuid:
        params["device_requests"] = [DeviceRequest(driver="nvidia", device_ids=[spec.gpu_uuid],
                                                   capabilities=[["gpu", "utility", "graphics"]])]
    return params
