"""Broker benchmark (bounded): session start latency, idle memory per session, list-API latency.

    .venv/bin/python bench/bench_broker.py [--launches 20] [--idle 10] [--rows 1000]

Uses the local Docker daemon, the registry on 127.0.0.1:5000, the base image of this checkout's
``recipes/base/debian12-mate`` (``asci/base-debian12-mate:<definition hash>``, built when missing)
and a throw-away SQLite database (or ``ASCI_TEST_POSTGRES_URL`` when set). Cleans up every
container, volume and session folder it makes. Prints a JSON summary.
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
from broker import service  # noqa: E402
from broker.backends.docker import DockerBackend  # noqa: E402
from broker.models import DesktopSession  # noqa: E402
from builder.base_images import build_base_image, load_definition  # noqa: E402
from builder.docker_engine import push_image  # noqa: E402
from tests.support import make_world  # noqa: E402
from tests.support import user_of as user  # noqa: E402
from web import create_app  # noqa: E402


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=20)
    parser.add_argument("--idle", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1000)
    args = parser.parse_args()
    client = docker.DockerClient(base_url="unix:///var/run/docker.sock")
    repository = f"127.0.0.1:5000/asci-bench-{uuid.uuid4().hex[:8]}"
    base = build_base_image(load_definition(PROJECT_ROOT / "recipes", "debian12-mate"), client, log=lambda line: None)
    client.images.get(base).tag(repository, "v1")
    digest = push_image(client, repository, "v1", log=lambda line: None)
    tmp = Path(tempfile.mkdtemp(prefix="asci-bench-"))
    url = os.environ.get("ASCI_TEST_POSTGRES_URL", "")
    if url:
        from tests.conftest import _reset_postgres

        _reset_postgres(url)
    settings = Settings(data_dir=tmp, database_url=url, broker_instance=f"bench-{uuid.uuid4().hex[:6]}",
                        session_max_per_user=100, log_format="text")
    result: dict = {"database": "postgresql" if url else "sqlite", "image": base}
    db.upgrade(settings)
    world = make_world(settings, [dict(name="local", docker_url="unix:///var/run/docker.sock", cpus=64,
                                       memory_bytes=128 << 30, max_sessions=100)],
                       image=f"{repository}:v1", digest=digest, data_path=str(tmp))
    broker = service.Broker(settings, DockerBackend())
    service.install(settings, broker)
    alice = user(settings, world, "alice")
    try:
        # 1. request -> drawn framebuffer, warm image, sequential launches (each stopped after)
        latencies, api_only = [], []
        for _ in range(args.launches):
            began = time.monotonic()
            with db.session_scope(settings) as session_db:
                row = broker.launch(session_db, alice, world["env"], "v1", world["e1"], cpus=1, memory="2g")
                api_only.append(time.monotonic() - began)
                rfb.wait_for_desktop(row.vnc_socket, row.vnc_password, timeout=120)
                latencies.append(time.monotonic() - began)
                broker.stop_session(session_db, row, "bench")
        result["launch_to_vnc_answer_s"] = {"p50": round(statistics.median(api_only), 3),
                                            "p95": round(pct(api_only, 0.95), 3)}
        result["launch_to_drawn_framebuffer_s"] = {"p50": round(statistics.median(latencies), 3),
                                                   "p95": round(pct(latencies, 0.95), 3), "n": len(latencies)}
        # 2. memory per idle desktop with N running
        running = []
        with db.session_scope(settings) as session_db:
            for _ in range(args.idle):
                row = broker.launch(session_db, alice, world["env"], "v1", world["e1"], cpus=1, memory="2g")
                rfb.wait_for_desktop(row.vnc_socket, row.vnc_password, timeout=120)
                running.append(row)
        time.sleep(10)
        usages = []
        for row in running:
            stats = client.api.stats(row.backend_state["container_id"], stream=False)
            memory = stats["memory_stats"]
            usages.append(memory["usage"] - memory.get("stats", {}).get("total_inactive_file", 0))
        result["idle_session_memory_mib"] = {"mean": round(statistics.mean(usages) / 2**20, 1),
                                             "max": round(max(usages) / 2**20, 1), "sessions": len(usages)}
        with db.session_scope(settings) as session_db:
            for row in running:
                broker.stop_session(session_db, session_db.get(DesktopSession, row.id), "bench")
        # 3. list API with N session rows
        with db.session_scope(settings) as session_db:
            template = session_db.get(DesktopSession, running[0].id)
            session_db.add_all([DesktopSession(user_id=template.user_id, experiment_id=template.experiment_id,
                                               environment_version_id=template.environment_version_id,
                                               image=template.image, image_digest=template.image_digest,
                                               node_id=template.node_id, state="stopped", backend_state={})
                                for _ in range(args.rows - args.launches - args.idle)])
        app = create_app(settings)
        test_client = app.test_client()
        headers = {"Authorization": f"Bearer {world['tokens']['alice']}"}
        timings = []
        for _ in range(30):
            began = time.monotonic()
            reply = test_client.get("/api/sessions", headers=headers)
            timings.append(time.monotonic() - began)
            assert reply.status_code == 200 and len(reply.json["sessions"]) == args.rows
        result["list_sessions_api_ms"] = {"rows": args.rows, "p50": round(statistics.median(timings) * 1000, 1),
                                          "p95": round(pct(timings, 0.95) * 1000, 1)}
    finally:
        for container in client.containers.list(all=True, filters={"label": f"asci.broker={settings.broker_instance}"}):
            container.remove(force=True)
        try:
            client.volumes.get(f"asci-home-{world['names']['alice']}").remove(force=True)
        except docker.errors.NotFound:
            pass
        client.images.remove(f"{repository}:v1", noprune=True)
        broker.backend.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
