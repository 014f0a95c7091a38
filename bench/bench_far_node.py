"""A node with an agent against a local node: launch to drawn, frame time through the relay, agent memory.

    .venv/bin/python bench/bench_far_node.py [--launches 5] [--frames 20] [--desktops 20] [--out FILE]

The far node is ``tests/farnodes.py``'s (own mount and pid namespaces, own dockerd and agent on
127.0.0.2, TLS only); the local node is this machine's Docker daemon on its unix socket. The desktop
base image of this checkout is pushed to 127.0.0.1:5000 and pulled by both. Measured:

* **launch to drawn**, alternating far and local, ``--launches`` each: ``Broker.launch`` in this
  process, then VNC frames captured every 50 ms until one is drawn (8 colours): on the local node from
  the socket path, on the far node through ``broker.open_viewer``'s bridge to the agent's relay (a
  ticket, a TLS connection to the agent, the agent's connection to the socket), exactly what
  websockify's token plugin opens;
* **full frame** (the desktop's whole framebuffer, 1280x800 by default), ``--frames`` times on one far
  desktop: a full (non-incremental) update requested and read on an open connection, through a bridge
  and directly from the node's socket (root here can open the far node's run folder by path: only
  the bench does), and the same with the connection's set-up (connect, ticket, TLS, RFB handshake);
  the same full update in ZRLE (zlib-compressed, what a real viewer negotiates instead of Raw), relay
  and direct alternating, each the best of two updates on a fresh connection;
* **agent memory**: the agent's resident set (``VmRSS``) idle, with ``--desktops`` desktops running on
  the far node, and with one relay open to each of them.

Prints (and writes to ``--out``) a JSON summary with p50 and extremes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402

from asci import db, rfb  # noqa: E402
from asci.config import PROJECT_ROOT, Settings  # noqa: E402
from broker import BrokerError, open_viewer, register_node, service  # noqa: E402
from broker.agent_client import LocalBridge, parse_socket_uri  # noqa: E402
from broker.backends.docker import DockerBackend  # noqa: E402
from broker.models import DesktopSession, Node  # noqa: E402
from builder.base_images import build_base_image, load_definition  # noqa: E402
from tests.farnodes import FarCluster  # noqa: E402
from tests.support import add_members, make_world, shared_push  # noqa: E402
from tests.support import user_of as user  # noqa: E402

MAIN = "unix:///var/run/docker.sock"


def summary(values: list[float], digits: int = 4) -> dict:
    return {"p50": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "n": len(values)}


def set_drained(settings, name: str, drained: bool) -> None:
    with db.session_scope(settings) as session_db:
        session_db.query(Node).filter(Node.name == name).one().drained = drained


def launch(broker, settings, world, who: str) -> tuple[int, str, str]:
    with db.session_scope(settings) as session_db:
        row = broker.launch(session_db, session_db.merge(user(settings, world, who)), world["env"], "v1", world["e1"])
        return row.id, row.vnc_socket, row.vnc_password


def launch_to_drawn(broker, settings, world, who: str) -> tuple[float, int, str, str]:
    began = time.monotonic()
    session_id, target, password = launch(broker, settings, world, who)
    while True:
        path = open_viewer(settings, target)
        try:
            if rfb.capture(path, password, timeout=10).is_drawn(8):
                break
        except rfb.RFBError:
            pass
        if time.monotonic() - began > 120:
            raise RuntimeError("no drawn desktop within 120 s")
        time.sleep(0.05)
    return time.monotonic() - began, session_id, target, password


def stop(broker, settings, session_id: int) -> None:
    with db.session_scope(settings) as session_db:
        broker.stop_session(session_db, session_db.get(DesktopSession, session_id), "bench")


def frame_times(path_of, password: str, count: int) -> tuple[list[float], list[float]]:
    """(full frame on an open connection, connection set-up + full frame), ``count`` each."""
    sock, width, height, _name = rfb._open(path_of(), password, 10)
    pixels = bytearray(width * height * 4)
    on_open = []
    with sock:
        for _ in range(count):
            began = time.monotonic()
            rfb._request(sock, width, height, False)
            rfb._read_update(sock, width, height, pixels)
            on_open.append(time.monotonic() - began)
    with_setup = []
    for _ in range(count):
        began = time.monotonic()
        rfb.capture(path_of(), password, timeout=10)
        with_setup.append(time.monotonic() - began)
    return on_open, with_setup


ZRLE_ENCODING = 16


def zrle_frame_times(path: str, password: str, count: int) -> tuple[list[float], list[int]]:
    """Full (non-incremental) updates in ZRLE, the zlib encoding noVNC also offers, on an open connection:
    the seconds until the whole update has arrived and its size in bytes (the rectangles are read, not
    decoded: what is timed is the server's encoding and the path's bytes, as a viewer receives them)."""
    sock, width, height, _name = rfb._open(path, password, 10)
    times, sizes = [], []
    with sock:
        sock.sendall(struct.pack("!BxHi", 2, 1, ZRLE_ENCODING))
        for _ in range(count):
            began = time.monotonic()
            rfb._request(sock, width, height, False)
            size = 0
            while True:
                (kind,) = struct.unpack("!B", rfb._recv_exact(sock, 1))
                if kind == 0:
                    break
                if kind != 2:  # bell; anything else is not expected here
                    raise SystemExit(f"unexpected server message {kind}")
            _pad, rectangles = struct.unpack("!BH", rfb._recv_exact(sock, 3))
            for _ in range(rectangles):
                _x, _y, w, h, encoding = struct.unpack("!HHHHi", rfb._recv_exact(sock, 12))
                if encoding == ZRLE_ENCODING:
                    (length,) = struct.unpack("!I", rfb._recv_exact(sock, 4))
                elif encoding == rfb.RAW_ENCODING:
                    length = w * h * 4
                else:
                    raise SystemExit(f"server sent encoding {encoding}")
                rfb._recv_exact(sock, length)
                size += length
            times.append(time.monotonic() - began)
            sizes.append(size)
    return times, sizes


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--launches", type=int, default=5)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--desktops", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    client = docker.DockerClient(base_url=MAIN, version="1.41", timeout=120)
    repository = f"127.0.0.1:5000/asci-bench-{uuid.uuid4().hex[:8]}"
    base = build_base_image(load_definition(PROJECT_ROOT / "recipes", "debian12-mate"), client, log=lambda line: None)
    client.images.get(base).tag(repository, "v1")
    digest = shared_push(client, repository, "v1")
    tmp = Path(tempfile.mkdtemp(prefix="asci-bench-far-"))
    cluster = FarCluster([tmp])
    result: dict = {"load_average_before": os.getloadavg()}
    broker = None
    settings = None
    world = {"names": {}}
    try:
        cluster.start(1)
        far = cluster.nodes["far1"]
        settings = Settings(data_dir=tmp / "data", broker_instance=f"far{uuid.uuid4().hex[:6]}", log_format="text",
                            session_start_timeout_s=180, session_max_per_user=args.desktops + 2,
                            experiment_data_roots=(cluster.experiments,), node_cpu_overcommit=100.0,
                            node_max_sessions=args.desktops + 5)
        db.upgrade(settings)
        world = make_world(settings, [], image=f"{repository}:v1", digest=digest)
        members = add_members(settings, world, args.desktops + 1)  # member00 launches; the others hold desktops
        broker = service.Broker(settings, DockerBackend(timeout=120))
        with db.session_scope(settings) as session_db:
            register_node(settings, session_db, "local", MAIN)
            register_node(settings, session_db, "far1", far.docker_url, agent=far.agent, **far.tls())
        # warm-up: the image on both nodes, page caches
        for name, other in (("far1", "local"), ("local", "far1")):
            set_drained(settings, other, True)
            set_drained(settings, name, False)
            seconds, session_id, _target, _password = launch_to_drawn(broker, settings, world, "member00")
            stop(broker, settings, session_id)
        times = {"far1": [], "local": []}
        for number in range(args.launches):
            for name, other in (("far1", "local"), ("local", "far1")):
                set_drained(settings, other, True)
                set_drained(settings, name, False)
                seconds, session_id, _target, _password = launch_to_drawn(broker, settings, world, "member00")
                times[name].append(seconds)
                stop(broker, settings, session_id)
            print(f"launch {number + 1}: far {times['far1'][-1]:.2f} s, local {times['local'][-1]:.2f} s",
                  file=sys.stderr)
        result["launch_to_drawn_s"] = {"agent_node": summary(times["far1"], 3), "local_node": summary(times["local"], 3),
                                       "agent_minus_local_p50_s": round(statistics.median(times["far1"])
                                                                        - statistics.median(times["local"]), 3)}
        # frame times on one far desktop
        set_drained(settings, "local", True)
        set_drained(settings, "far1", False)
        _seconds, session_id, target, password = launch_to_drawn(broker, settings, world, "alice")
        _node, key = parse_socket_uri(target)
        agent = far.agent_node()
        frame = rfb.capture(open_viewer(settings, target), password)
        result["frame"] = {"width": frame.width, "height": frame.height}
        with LocalBridge(agent, key, parent=settings.run_dir / "bridges") as bridge:
            relay_open, relay_setup = frame_times(lambda: bridge.path, password, args.frames)
        direct = str(far.run_dir / key / "vnc" / "vnc.sock")
        direct_open, direct_setup = frame_times(lambda: direct, password, args.frames)
        result["full_frame_s"] = {
            "relay_open_connection": summary(relay_open), "direct_open_connection": summary(direct_open),
            "relay_over_direct_p50": round(statistics.median(relay_open) / statistics.median(direct_open), 3),
            "relay_with_setup": summary(relay_setup), "direct_with_setup": summary(direct_setup)}
        relay_zrle, direct_zrle, zrle_bytes = [], [], []
        for _ in range(args.frames):  # alternating, one frame each way per round
            with LocalBridge(agent, key, parent=settings.run_dir / "bridges", once=True) as bridge:
                times, sizes = zrle_frame_times(bridge.path, password, 3)
            relay_zrle.append(min(times[1:]))  # the first update of a connection also warms the encoder
            times, sizes = zrle_frame_times(direct, password, 3)
            direct_zrle.append(min(times[1:]))
            zrle_bytes.append(sizes[-1])
        result["full_frame_zrle_s"] = {
            "relay_open_connection": summary(relay_zrle), "direct_open_connection": summary(direct_zrle),
            "relay_over_direct_p50": round(statistics.median(relay_zrle) / statistics.median(direct_zrle), 3),
            "update_bytes_p50": int(statistics.median(zrle_bytes))}
        stop(broker, settings, session_id)
        # agent memory with many desktops
        idle = rss_kib(far.agent_pids())
        running = []
        failures = []
        for who in members[1:]:
            try:
                running.append(launch(broker, settings, world, who))
            except BrokerError as exc:  # on two busy cores a desktop may greet later than the proof waits
                failures.append(str(exc)[-200:])
        result["desktops_failed_to_start"] = failures
        held = rss_kib(far.agent_pids())
        streams = [agent.open_stream(parse_socket_uri(target)[1]) for _sid, target, _pw in running]
        for stream in streams:
            stream.recv(12)
        relaying = rss_kib(far.agent_pids())
        for stream in streams:
            stream.close()
        result["agent_rss_kib"] = {"idle": idle, f"with_{len(running)}_desktops": held,
                                   f"with_{len(running)}_relays_open": relaying}
        for session_id, _target, _password in running:
            stop(broker, settings, session_id)
    finally:
        if settings is not None:
            for node_client in (client, cluster.nodes["far1"].client() if cluster.nodes else None):
                if node_client is None:
                    continue
                for container in node_client.containers.list(
                        all=True, filters={"label": f"asci.broker={settings.broker_instance}"}):
                    container.remove(force=True)
            for volume in client.volumes.list(filters={"label": "asci.managed=1"}):
                if any(volume.name == f"asci-home-{name}" for name in world["names"].values()):
                    volume.remove(force=True)
        cluster.stop()
        client.images.remove(f"{repository}:v1", noprune=True)
        if broker is not None:
            broker.backend.close()
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
