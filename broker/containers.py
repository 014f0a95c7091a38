"""The create parameters of a session container (plain data, inspected by tests).

Exact image digest; a network namespace of its own (``none``: loopback only, or the Docker
network the facility named for desktops; never the node's); for ``none`` the namespace is made by
the runtime itself (Docker's ``NetworkDisabled``: no network sandbox, no interface but ``lo``,
about 0.2 s quicker to start than ``--network none``) with a hosts file of the platform's for
``localhost`` and the desktop's host name; the VNC server on a Unix socket in the
session's folder (bind-mounted at ``/run/asci/vnc``) and the VNC password in a file only the
session's uid reads (``/run/asci/secret``, read-only), never in the environment; the user's
uid:gid; every capability dropped, no-new-privileges, memory (no swap), CPU and pids limits, the
guarantee as CPU shares (1024 per CPU) and a memory reservation; the experiment's data at
``/data`` (read-only unless configured); a per-user named volume as home; labels naming session,
user, environment and version. A GPU session gets a device request for that GPU's UUID plus the
VirtualGL environment; every other session gets ``NVIDIA_VISIBLE_DEVICES=void`` so that an
image's default (``all`` in the CUDA bases) never hands it the node's GPUs.
"""

from __future__ import annotations

from pathlib import Path

from docker.types import DeviceRequest, Mount

from broker import rundir
from broker.backends.base import LaunchSpec

MANAGED = "asci.managed"
LABEL_SESSION, LABEL_INSTANCE = "asci.session", "asci.broker"


def environment(spec: LaunchSpec) -> dict[str, str]:
    """The desktop image's environment contract, and the GPU (or none) the session may use."""
    env = {
        "VNC_SOCKET": rundir.CONTAINER_SOCKET,
        "VNC_PASSWD_FILE": rundir.CONTAINER_PASSWD,
        "ASCI_USER_NAME": spec.user_name,
        "ASCI_SESSION": str(spec.session_id),
        "HOME": spec.home_path,
        "USER": spec.user_name,
        "NVIDIA_VISIBLE_DEVICES": "void",
    }
    if spec.gpu_uuid:
        env.update({"NVIDIA_VISIBLE_DEVICES": spec.gpu_uuid, "NVIDIA_DRIVER_CAPABILITIES": "all",
                    "VGL_DISPLAY": "egl"})
    return env


def isolated(spec: LaunchSpec) -> bool:
    """True when the desktop has no Docker network at all (loopback only)."""
    return spec.network in ("", "none")


def mounts(spec: LaunchSpec) -> list[Mount]:
    """Home volume, the experiment's data at /data, the VNC socket folder and the password folder
    (and the hosts file of a desktop without a network)."""
    session = rundir.SessionDir(Path(spec.run_dir))
    home = (Mount(target=spec.home_path, source=spec.home_bind, type="bind") if spec.home_bind
            else Mount(target=spec.home_path, source=spec.home_volume, type="volume"))
    result = [home,
              Mount(target=rundir.CONTAINER_VNC_DIR, source=str(session.vnc), type="bind"),
              Mount(target=rundir.CONTAINER_SECRET_DIR, source=str(session.secret), type="bind", read_only=True)]
    if isolated(spec):
        result.append(Mount(target="/etc/hosts", source=str(session.hosts), type="bind", read_only=True))
    if spec.data_path:
        result.append(Mount(target="/data", source=spec.data_path, type="bind", read_only=spec.data_read_only))
    return result


def create_params(spec: LaunchSpec) -> dict:
    """Keyword arguments for ``docker.containers.create``."""
    params = {
        "image": spec.image,
        "name": spec.name,
        "detach": True,
        "hostname": rundir.hostname_for(spec.name),
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
        "shm_size": shm_bytes(spec),
        "mounts": mounts(spec),
        "labels": dict(spec.labels),
        "init": True,
        "restart_policy": {"Name": "no"},
    }
    if isolated(spec):
        params["network_disabled"] = True  # a fresh namespace from the runtime: loopback only
    else:
        params["network_mode"] = spec.network
    if spec.gpu_uuid:
        params["device_requests"] = [DeviceRequest(driver="nvidia", device_ids=[spec.gpu_uuid],
                                                   capabilities=[["gpu", "utility", "graphics"]])]
    return params


def shm_bytes(spec: LaunchSpec) -> int:
    """Size of /dev/shm: a quarter of the memory limit, at most 1 GiB."""
    return min(spec.memory_bytes // 4, 1 << 30)
