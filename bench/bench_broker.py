"""Broker benchmark (bounded): launch latency, then N idle desktops side by side through normal placement.

    .venv/bin/python bench/bench_broker.py [--launches 20] [--idle 100] [--deadline-s 1200]

Uses the local Docker daemon, the registry on 127.0.0.1:5000, the base image of this checkout's
``recipes/base/debian12-mate`` (``asci/base-debian12-mate:<definition hash>``, built when missing)
and a throw-away SQLite database (or ``ASCI_TEST_POSTGRES_URL``, whose schema is reset, when set).
The daemon is registered as one node the way ``asci node add`` does it: CPUs and memory from
``docker info``, the settings' reserve and overcommit. Every desktop is launched by its own user
through ``Broker.launch`` (placement, session folder, container, readiness proof).

1. ``--launches`` sequential launches, each stopped before the next: request -> VNC answers (the
   broker's ``running``) and request -> drawn framebuffer (``asci.rfb.wait_for_desktop``).
2. ``--idle`` desktops started one after the other and left idle, each with a guarantee sized for an
   idle desktop (``--idle-cpu-guarantee``, ``--idle-memory-guarantee``; the limits stay the defaults);
   placement admits them against the node's schedulable capacity. 10 s after the last one is drawn,
   memory per desktop is read from each container's cgroup (usage minus inactive file cache, what
   ``docker stats`` shows) and from the host (MemAvailable before and after).

Stops when ``--deadline-s`` is reached. Cleans up every container, volume and session folder it
makes; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from asci import db, rfb  # noqa: E402
from asci.config import PROJECT_ROOT, Settings  # noqa: E402
from broker import NoCapacity, register_node, service  # noqa: E402
from broker.backends.docker import DockerBackend  # noqa: E402
from broker.models import DesktopSession  # noqa: E402
from broker.placement import schedulable  # noqa: E402
from builder.base_images import build_base_image, load_definition  # noqa: E402
from builder.docker_engine import push_image  # noqa: E402
from tests.support import add_members, make_world  # noqa: E402
from tests.support import user_of as user  # noqa: E402

MAIN = "unix:///var/run/docker.sock"


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


def container_memory(client: docker.DockerClient, container_id: str) -> int:
    """Bytes a container uses, less inactive file cache (cgroup v1 directly; docker stats otherwise)."""
    folder = Path("/sys/fs/cgroup/memory/docker") / container_id
    if folder.is_dir():
        usage = int((folder / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
        return usage - int(stat.get("total_inactive_file", 0))
    memory = client.api.stats(container_id, stream=False)["memory_stats"]
    return memory["usage"] - memory.get("stats", {}).get("total_inactive_file", 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=20)
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument("--idle-cpu-guarantee", type=float, default=0.05)
    parser.add_argument("--idle-memory-guarantee", default="192m")
    parser.add_argument("--deadline-s", type=float, default=1200)
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    args = parser.parse_args()
    deadline = time.monotonic() + args.deadline_s
    client = docker.DockerClient(base_url=MAIN, version="1.41", timeout=120)
    repository = f"127.0.0.1:5000/asci-bench-{uuid.uuid4().hex[:8]}"
    base = build_base_image(load_definition(PROJECT_ROOT / "recipes", "debian12-mate"), client, log=lambda line: None)
    client.images.get(base).tag(repository, "v1")
    digest = push_image(client, repository, "v1", log=lambda line: None)
    tmp = Path(tempfile.mkdtemp(prefix="asci-bench-"))
    url = os.environ.get("ASCI_TEST_POSTGRES_URL", "")
    if url:
        from tests.support import reset_postgres

        reset_postgres(url)
    settings = Settings(data_dir=tmp, database_url=url, broker_instance=f"bench-{uuid.uuid4().hex[:6]}",
                        log_format="text", session_start_timeout_s=180)
    db.upgrade(settings)
    world = make_world(settings, [], image=f"{repository}:v1", digest=digest)
    members = add_members(settings, world, max(args.launches, args.idle))
    broker = service.Broker(settings, DockerBackend(timeout=120))
    with db.session_scope(settings) as session_db:
        node = register_node(settings, session_db, "local", MAIN)
        cpus, memory = schedulable(node)
        result: dict = {"database": "postgresql" if url else "sqlite", "image": base, "node": {
            "cpus": node.cpus, "memory_gib": round(node.memory_bytes / 2**30, 2), "schedulable_cpus": cpus,
            "schedulable_memory_gib": round(memory / 2**30, 2), "max_sessions": node.max_sessions},
            "load_average_before": os.getloadavg()}
    try:
        # 1. request -> VNC answers -> drawn framebuffer, warm image, sequential (each stopped after)
        answered, drawn = [], []
        for who in members[:args.launches]:
            if time.monotonic() > deadline:
                break
            began = time.monotonic()
            with db.session_scope(settings) as session_db:
                row = broker.launch(session_db, session_db.merge(user(settings, world, who)), world["env"], "v1",
                                    world["e1"])
                answered.append(time.monotonic() - began)
                rfb.wait_for_desktop(row.vnc_socket, row.vnc_password, timeout=120)
                drawn.append(time.monotonic() - began)
                broker.stop_session(session_db, row, "bench")
        if answered:
            result["launch_to_vnc_answer_s"] = {"p50": round(statistics.median(answered), 3),
                                                "p95": round(pct(answered, 0.95), 3), "n": len(answered)}
            result["launch_to_drawn_desktop_s"] = {"p50": round(statistics.median(drawn), 3),
                                                   "p95": round(pct(drawn, 0.95), 3), "n": len(drawn)}
        # 2. idle desktops side by side, placed like any other
        time.sleep(5)
        before = mem_available()
        running, refused, idle_drawn = [], None, []
        began_all = time.monotonic()
        for who in members[:args.idle]:
            if time.monotonic() > deadline:
                result["stopped_at_deadline"] = True
                break
            began = time.monotonic()
            with db.session_scope(settings) as session_db:
                try:
                    row = broker.launch(session_db, session_db.merge(user(settings, world, who)), world["env"],
                                        "v1", world["e1"], cpu_guarantee=args.idle_cpu_guarantee,
                                        memory_guarantee=args.idle_memory_guarantee)
                except NoCapacity as exc:
                    refused = str(exc)
                    break
                rfb.wait_for_desktop(row.vnc_socket, row.vnc_password, timeout=180)
                idle_drawn.append(time.monotonic() - began)
                running.append((row.id, row.backend_state["container_id"]))
            if len(running) % 10 == 0:
                print(f"{len(running)} idle desktops after {time.monotonic() - began_all:.0f} s", file=sys.stderr)
        time.sleep(10)
        usages = [container_memory(client, container_id) for _, container_id in running]
        after = mem_available()
        result["idle_desktops"] = {
            "running": len(running), "refused": refused,
            "guarantee": {"cpu": args.idle_cpu_guarantee, "memory": args.idle_memory_guarantee},
            "launch_to_drawn_s": {"p50": round(statistics.median(idle_drawn), 3),
                                  "p95": round(pct(idle_drawn, 0.95), 3), "last": round(idle_drawn[-1], 3)},
            "seconds_to_start_all": round(time.monotonic() - began_all - 10, 1),
            "memory_per_desktop_mib": {"mean": round(statistics.mean(usages) / 2**20, 1),
                                       "median": round(statistics.median(usages) / 2**20, 1),
                                       "max": round(max(usages) / 2**20, 1)},
            "host_memory_used_per_desktop_mib": round((before - after) / len(running) / 2**20, 1),
            "host_memory_used_gib": round((before - after) / 2**30, 2)}
        with db.session_scope(settings) as session_db:
            result["idle_desktops"]["guarantees_held"] = {
                "sessions": len(running),
                "cpus": round(sum(session_db.get(DesktopSession, sid).cpu_guarantee for sid, _ in running), 2)}
        result["load_average_after"] = os.getloadavg()
    finally:
        for container in client.containers.list(all=True, filters={"label": f"asci.broker={settings.broker_instance}"}):
            container.remove(force=True)
        for name in world["names"].values():
            try:
                client.volumes.get(f"asci-home-{name}").remove(force=True)
            except docker.errors.NotFound:
                pass
        client.images.remove(f"{repository}:v1", noprune=True)
        broker.backend.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
