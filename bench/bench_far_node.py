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
* **full frame** (the desktop's whole framebuffer, 1280x800 by default) on one far desktop, through the
  agent's relay (a TLS stream opened with a ticket: what the viewer proxy opens for a far desktop) and
  directly from the node's socket (root here can open the far node's run folder by path: only the bench
  does), alternating, ``--frames`` rounds of a fresh connection each way and the better of its 2nd and
  3rd full (non-incremental) update, in three encodings: **Raw** (4 bytes a pixel, 4 MB), **ZRLE**, and
  **what noVNC asks for** (its encodings in its order, quality 6, compression 2: TigerVNC answers in
  Tight, JPEG where a rectangle has many colours), each on two screens: the desktop as it starts (nearly
  flat) and a **busy screen** (``busy_screen.py``: a detector-like image of rings and noise drawn over
  the whole screen by an X client in the desktop); besides, Raw through ``LocalBridge`` (the private
  Unix socket ``rfb`` and the smoke gate reach a far desktop by), on an open connection and with the
  connection's set-up (connect, ticket, TLS, RFB handshake);
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
TIGHT_ENCODING = 7
LAST_RECT = -224
# what noVNC 1.6 asks TigerVNC for, in its order (core/rfb.js _sendEncodings), less the cursor and
# desktop-size pseudo-encodings: Tight, TightPNG, ZRLE, JPEG, Hextile, RRE, Zlib, Raw, quality 6,
# compression 2, LastRect. TigerVNC picks the first it supports: Tight.
NOVNC_ENCODINGS = (TIGHT_ENCODING, -260, ZRLE_ENCODING, 21, 5, 2, 6, rfb.RAW_ENCODING, -32 + 6, -256 + 2, LAST_RECT)
TPIXEL = 3  # Tight's pixel for 32 bpp, depth 24


def _compact_length(sock) -> int:
    """Tight's length: 1 to 3 bytes, 7 bits in each of the first two (the high bit saying another byte
    follows) and 8 in the third."""
    length = 0
    for shift in (0, 7):
        (byte,) = rfb._recv_exact(sock, 1)
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return length
    (byte,) = rfb._recv_exact(sock, 1)
    return length | byte << 14


def _skip_tight(sock, w: int, h: int) -> int:
    """Read one Tight rectangle (RFC 6143 7.7.4 and the TightVNC extension), its bytes counted."""
    (control,) = rfb._recv_exact(sock, 1)
    kind = control >> 4
    if kind == 0x08:  # fill: one pixel
        rfb._recv_exact(sock, TPIXEL)
        return 1 + TPIXEL
    if kind == 0x09:  # JPEG
        length = _compact_length(sock)
        rfb._recv_exact(sock, length)
        return 1 + length
    if kind > 0x09:
        raise SystemExit(f"Tight compression {kind:#x} was not asked for")
    size, filtered = w * h * TPIXEL, bool(control & 0x40)
    header = 1
    if filtered:
        (filter_id,) = rfb._recv_exact(sock, 1)
        header += 1
        if filter_id == 1:  # palette
            (colours,) = rfb._recv_exact(sock, 1)
            colours += 1
            rfb._recv_exact(sock, colours * TPIXEL)
            header += 1 + colours * TPIXEL
            size = ((w + 7) // 8) * h if colours == 2 else w * h
        elif filter_id not in (0, 2):
            raise SystemExit(f"Tight filter {filter_id} is not defined")
    if size >= 12:
        size = _compact_length(sock)
    rfb._recv_exact(sock, size)
    return header + size


def encoded_frame_times(opened, count: int, encodings=(ZRLE_ENCODING,)) -> tuple[list[float], list[int]]:
    """Full (non-incremental) updates in ``encodings`` on the open RFB connection ``opened`` (``rfb._open``'s
    tuple): the seconds until the whole update has arrived and its size in bytes. The rectangles are read,
    not decoded: what is timed is the server's encoding and the path's bytes, as a viewer receives them."""
    sock, width, height, _name = opened
    times, sizes = [], []
    with sock:
        sock.sendall(struct.pack(f"!BxH{len(encodings)}i", 2, len(encodings), *encodings))
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
                if encoding == LAST_RECT:
                    break
                if encoding == TIGHT_ENCODING:
                    size += _skip_tight(sock, w, h)
                    continue
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


ENCODINGS = {"raw": (rfb.RAW_ENCODING,), "zrle": (ZRLE_ENCODING,), "novnc_tight": NOVNC_ENCODINGS}


def full_frames(agent, key: str, direct: str, password: str, rounds: int) -> dict:
    """Full updates in each of :data:`ENCODINGS`, through the agent's relay (a TLS stream opened with a
    ticket, what the viewer proxy opens for a far desktop) and on the node's socket directly, alternating:
    per round a fresh connection each way and the better of its 2nd and 3rd update (the first also warms
    the server's encoder). p50 over ``rounds``."""
    figures = {}
    for name, encodings in ENCODINGS.items():
        relay, direct_times, sizes = [], [], []
        for _ in range(rounds):
            times, _sizes = encoded_frame_times(rfb.open_on(agent.open_stream(key), password), 3, encodings)
            relay.append(min(times[1:]))
            times, update_sizes = encoded_frame_times(rfb._open(direct, password, 10), 3, encodings)
            direct_times.append(min(times[1:]))
            sizes.append(update_sizes[-1])
        figures[name] = {"relay": summary(relay), "direct": summary(direct_times),
                         "relay_over_direct_p50": round(statistics.median(relay) / statistics.median(direct_times), 3),
                         "update_bytes_p50": int(statistics.median(sizes))}
        print(f"full frame {name}: relay {figures[name]['relay']['p50'] * 1000:.1f} ms, direct "
              f"{figures[name]['direct']['p50'] * 1000:.1f} ms, {figures[name]['update_bytes_p50']} bytes",
              file=sys.stderr)
    return figures


PAINTER = Path(__file__).with_name("busy_screen.py")


def paint_busy_screen(node_client, broker_instance: str, direct: str, password: str, timeout: float = 60) -> int:
    """Cover the desktop with a detector-like image (rings and noise, false colour: ``busy_screen.py``)
    from an X client run in the container as the display's owner, and wait until the screen shows it: a
    frame with the detail of a scientist's data, not the nearly flat desktop background. Returns the
    distinct colours on the screen. The run's one desktop is found by its broker label."""
    (container,) = node_client.containers.list(filters={"label": f"asci.broker={broker_instance}"})
    code, owner = container.exec_run(["stat", "-c", "%u", "/tmp/.X11-unix/X1"])
    if code != 0:
        raise RuntimeError(f"the desktop has no X display socket: {owner.decode(errors='replace')}")
    container.exec_run(["python3", "-c", PAINTER.read_text()], user=owner.decode().strip(),
                       environment={"DISPLAY": ":1"}, detach=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        colours = rfb.capture(direct, password).distinct_colours(limit=100_000)
        if colours > 5_000:
            return colours
        time.sleep(0.5)
    raise RuntimeError(f"the busy screen did not appear within {timeout:.0f} s")


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
        direct = str(far.run_dir / key / "vnc" / "vnc.sock")
        with LocalBridge(agent, key, parent=settings.run_dir / "bridges") as bridge:
            bridge_open, bridge_setup = frame_times(lambda: bridge.path, password, args.frames)
        direct_open, direct_setup = frame_times(lambda: direct, password, args.frames)
        result["raw_frame_through_bridge_s"] = {
            "bridge_open_connection": summary(bridge_open), "direct_open_connection": summary(direct_open),
            "bridge_over_direct_p50": round(statistics.median(bridge_open) / statistics.median(direct_open), 3),
            "bridge_with_setup": summary(bridge_setup), "direct_with_setup": summary(direct_setup)}
        result["full_frame_s"] = {"desktop": full_frames(agent, key, direct, password, args.frames)}
        colours = paint_busy_screen(far.client(), settings.broker_instance, direct, password)
        result["full_frame_s"]["busy_screen"] = {"distinct_colours": colours,
                                                 **full_frames(agent, key, direct, password, args.frames)}
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
