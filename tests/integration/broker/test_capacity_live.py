"""With the embedded defaults, the local Docker daemon registered from what it reports admits 20
concurrent desktops of 20 different users: real containers, launched at once through the API."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from asci import rfb
from asci.config import Settings
from asci.db import session_scope
from broker import register_node
from broker.backends.docker import DockerBackend
from broker.models import DesktopSession
from broker.placement import schedulable
from tests.support import add_members, make_world, remove_sessions
from web import create_app

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.postgres, pytest.mark.slow]
MAIN = "unix:///var/run/docker.sock"
USERS = 20


def test_twenty_users_get_twenty_desktops_on_this_machine(pg_settings, desktop_image, tmp_path, make_broker):
    defaults = Settings()
    settings = pg_settings.replace(broker_instance=f"cap{tmp_path.name[-12:].lower().replace('_', '-')}"[:40],
                                   session_start_timeout_s=120)
    for name in ("session_cpu_guarantee", "session_cpu_limit", "session_memory_guarantee_mb",
                 "session_memory_limit_mb", "node_reserve_cpus", "node_reserve_memory_mb", "node_cpu_overcommit",
                 "node_memory_overcommit", "node_max_sessions", "session_max_per_user", "placement_policy"):
        assert getattr(settings, name) == getattr(defaults, name), name  # the embedded defaults, untouched
    world = make_world(settings, [], image=desktop_image.split("@")[0] + ":v1", digest=desktop_image.split("@")[1])
    members = add_members(settings, world, USERS)
    broker = make_broker(settings, DockerBackend())
    with session_scope(settings) as db:
        node = register_node(settings, db, "local", MAIN, backend=broker.backend)
        cpus, memory = schedulable(node)
        room = min(int(cpus / settings.session_cpu_guarantee + 1e-9),
                   memory // (settings.session_memory_guarantee_mb << 20), node.max_sessions)
        print(f"local: {node.cpus:g} CPUs, {node.memory_bytes / 2**30:.1f} GiB from the engine; "
              f"schedulable {cpus:g} CPUs, {memory / 2**30:.1f} GiB: room for {room} default desktops")
    assert room >= USERS
    app = create_app(settings, broker=broker)

    def launch(who: str):
        with app.test_client() as client:
            reply = client.post("/api/sessions", json={"environment": world["env"], "experiment": world["e1"]},
                                headers={"Authorization": f"Bearer {world['tokens'][who]}"})
            return reply.status_code, reply.json

    try:
        with ThreadPoolExecutor(max_workers=5) as pool:
            results = list(pool.map(launch, members))
        assert [status for status, _ in results] == [201] * USERS, [body for status, body in results if status != 201]
        assert len({body["user"] for _, body in results}) == USERS
        assert {(body["state"], body["node"], body["cpu_guarantee"], body["memory_guarantee_bytes"])
                for _, body in results} == {("running", "local", 0.25, 512 << 20)}
        with session_scope(settings) as db:
            targets = [(r.vnc_socket, r.vnc_password)
                       for r in (db.get(DesktopSession, body["id"]) for _, body in results)]
        assert len({path for path, _ in targets}) == USERS  # a socket of its own each
        for path, password in targets:  # each one drawn (raises when not within the time-out)
            assert rfb.wait_for_desktop(path, password, timeout=90).width == 1280
    finally:
        remove_sessions(MAIN, settings.broker_instance, world["names"].values())
