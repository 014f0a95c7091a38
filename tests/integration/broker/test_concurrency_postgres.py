"""30 concurrent launch requests on PostgreSQL: no two sessions share a socket folder or a GPU slot, and
no node takes more sessions than it may hold."""

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from asci.db import session_scope
from broker.models import DesktopSession, GpuLease
from tests.support import make_world
from web import create_app

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_thirty_concurrent_launches_never_collide(pg_settings, make_broker):
    settings = pg_settings.replace(session_max_per_user=100, gpu_share_count=2)
    nodes = [dict(name=f"n{i}", docker_url=f"unix:///fake{i}.sock", cpus=64, memory_bytes=256 << 30, max_sessions=10,
                  nvidia_smi="a100x2.csv") for i in range(3)]
    world = make_world(settings, nodes)
    broker = make_broker(settings)
    backend = broker.backend
    app = create_app(settings, broker=broker)
    headers = {"Authorization": f"Bearer {world['tokens']['alice']}"}

    def request(number: int):
        body = {"environment": world["env"], "experiment": world["e1"], "gpu": number % 2 == 0, "cpus": 1}
        with app.test_client() as client:
            reply = client.post("/api/sessions", json=body, headers=headers)
            return reply.status_code, reply.json

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(request, range(30)))
    statuses = sorted(status for status, _ in results)
    # 3 nodes x 10 places for 30 requests; 3 nodes x 2 GPUs x 2 slots = 12 GPU slots for 15 GPU requests
    assert statuses.count(201) == 27 and statuses.count(503) == 3, results
    with session_scope(settings) as db:
        running = db.scalars(select(DesktopSession).where(DesktopSession.state == "running")).all()
        sockets = [s.vnc_socket for s in running]
        assert len(sockets) == len(set(sockets)) == 27 and all(os.path.isdir(os.path.dirname(p)) for p in sockets)
        per_node = Counter(s.node_id for s in running)
        assert sum(per_node.values()) == 27 and max(per_node.values()) <= 10
        slots = [(g.node_id, g.gpu_index, g.slot) for g in db.scalars(select(GpuLease))]
        assert len(slots) == len(set(slots)) == 12
    gpu_params = [p for p in backend.created.values() if "device_requests" in p]
    assert len(gpu_params) == 12
    per_gpu: dict[tuple, int] = {}
    for params in gpu_params:
        [uuid] = params["device_requests"][0]["DeviceIDs"]
        assert params["environment"]["NVIDIA_VISIBLE_DEVICES"] == uuid and params["environment"]["VGL_DISPLAY"] == "egl"
        per_gpu[(params["node"], uuid)] = per_gpu.get((params["node"], uuid), 0) + 1
    assert set(per_gpu.values()) == {2}  # each GPU shared by exactly the configured count
