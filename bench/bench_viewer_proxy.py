"""The viewer path at scale: headless VNC viewers through the platform's WebSocket proxy.

    .venv/bin/python bench/bench_viewer_proxy.py [--counts 10,100,1000] [--desktops 10] [--hold 20]
        [--proxy new | --proxy websockify --before CHECKOUT] [--out FILE]

A real stack on this machine: the broker on the local Docker daemon launches ``--desktops`` real desktops
(the base image's Xvnc, pushed to 127.0.0.1:5000); the proxy under test runs as its own process, as in
``asci serve``: ``--proxy new`` is this checkout's event-driven proxy, ``--proxy websockify`` the
websockify + token plugin of an earlier checkout ``--before`` (git worktree of the commit before).

The viewers are asyncio clients in this process, not browsers: a WebSocket with the owner's token, the
RFB handshake with the session's password, 32-bit Raw pixels, then an incremental framebuffer update
request every second (a steady rate) while they are held open. For each count, on one desktop and
spread over all of them:

* memory per viewer: the proxy's PSS (its process and every child: websockify forks one per viewer) with
  the viewers connected, less its PSS before, over the count;
* dropped: viewers whose connection ended while held;
* round trip: a non-incremental 64x64 update request answered, p50/p95 over samples taken while the
  others are held, against the same request on the desktop's socket directly (no proxy);
* CPU per relayed MiB: 10 viewers ask for the whole screen, non-incremental, back to back for 5 s; the
  proxy's CPU seconds over the MiB it relayed.

Bounded: at most ``--counts`` viewers at once, each phase ``--hold`` seconds. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import docker  # noqa: E402
from websockets.asyncio.client import connect as ws_connect  # noqa: E402

from asci import db, rfb  # noqa: E402
from asci.config import PROJECT_ROOT, Settings  # noqa: E402
from broker import register_node, service  # noqa: E402
from broker.backends.docker import DockerBackend  # noqa: E402
from builder.base_images import build_base_image, load_definition  # noqa: E402
from tests.support import free_port, make_world, shared_push  # noqa: E402
from tests.support import user_of as user  # noqa: E402
from web import vnc_proxy, vnc_tokens  # noqa: E402

MAIN = "unix:///var/run/docker.sock"


# ------------------------------------------------------------------ RFB over a byte stream
class WebSocketStream:
    """``readexactly`` / ``write`` over a WebSocket whose binary messages split the RFB stream anywhere."""

    def __init__(self, websocket) -> None:
        self.websocket, self.buffer = websocket, bytearray()

    async def readexactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer += await self.websocket.recv()
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    async def write(self, data: bytes) -> None:
        await self.websocket.send(data)


class SocketStream:
    """The same over the desktop's Unix socket (the direct path)."""

    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer

    async def readexactly(self, count: int) -> bytes:
        return await self.reader.readexactly(count)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class Viewer:
    """A headless RFB client: handshake, then update requests; counts the bytes it received."""

    def __init__(self, stream, password: str) -> None:
        self.stream, self.password = stream, password
        self.width = self.height = 0
        self.received = 0
        self.updates: asyncio.Queue = asyncio.Queue()

    async def handshake(self) -> None:
        read = self.stream.readexactly
        if not (await read(12)).startswith(b"RFB "):
            raise rfb.RFBError("not a VNC server")
        await self.stream.write(b"RFB 003.008\n")
        (count,) = struct.unpack("!B", await read(1))
        if 2 not in await read(count):
            raise rfb.RFBError("no VNC authentication offered")
        await self.stream.write(b"\x02")
        await self.stream.write(rfb.vnc_response(self.password, await read(16)))
        if struct.unpack("!I", await read(4))[0] != 0:
            raise rfb.RFBError("VNC authentication failed")
        await self.stream.write(b"\x01")
        self.width, self.height = struct.unpack("!HH", await read(4))
        await read(16)
        (name_length,) = struct.unpack("!I", await read(4))
        await read(name_length)
        pixel_format = struct.pack("!BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        await self.stream.write(struct.pack("!B3x", 0) + pixel_format + struct.pack("!BxHi", 2, 1, 0))

    async def request(self, incremental: bool, w: int = 0, h: int = 0) -> None:
        await self.stream.write(struct.pack("!BBHHHH", 3, int(incremental), 0, 0, w or self.width, h or self.height))

    async def read_forever(self) -> None:
        read = self.stream.readexactly
        while True:
            (kind,) = struct.unpack("!B", await read(1))
            if kind == 0:
                _pad, rectangles = struct.unpack("!BH", await read(3))
                size = 4
                for _ in range(rectangles):
                    _x, _y, w, h, encoding = struct.unpack("!HHHHi", await read(12))
                    if encoding != 0:
                        raise rfb.RFBError(f"encoding {encoding}")
                    await read(w * h * 4)
                    size += 12 + w * h * 4
                self.received += size
                self.updates.put_nowait(time.monotonic())
            elif kind == 2:
                continue
            elif kind == 3:
                await read(3)
                (length,) = struct.unpack("!I", await read(4))
                await read(length)
            else:
                raise rfb.RFBError(f"server message {kind}")

    async def round_trip(self) -> float:
        while not self.updates.empty():
            self.updates.get_nowait()
        began = time.monotonic()
        await self.request(False, 64, 64)
        return await asyncio.wait_for(self.updates.get(), 15) - began


# ------------------------------------------------------------------ the proxy process
def proxy_tree_pss_and_cpu(pid: int) -> tuple[int, float]:
    """PSS bytes and CPU seconds (user + system) of ``pid`` and its descendants."""
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            pids.append(child)
            frontier.append(child)
    pss, cpu, tick = 0, 0.0, os.sysconf("SC_CLK_TCK")
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return pss, cpu


def start_proxy(settings: Settings, kind: str, before: Path | None, log: Path) -> subprocess.Popen:
    if kind == "new":
        return vnc_proxy.start(settings, log_path=log)
    env = {**os.environ, **settings.to_environ(), "PYTHONPATH": str(before)}
    out = open(log, "ab")
    process = subprocess.Popen([sys.executable, "-m", "websockify", "--token-plugin", "web.vnc_tokens.SessionTokens",
                                "--token-source", str(settings.data_dir), f"127.0.0.1:{settings.websockify_port}"],
                               env=env, cwd=before, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 20
    import socket

    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", settings.websockify_port)) == 0:
                return process
        time.sleep(0.2)
    raise RuntimeError("websockify did not listen")


def stop_proxy(proxy: subprocess.Popen) -> None:
    try:
        os.killpg(proxy.pid, signal.SIGTERM)
        proxy.wait(10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proxy.pid, signal.SIGKILL)
        proxy.wait()


def ended_desktops(client, settings) -> list[dict]:
    """Desktops that are no longer running (and whether the kernel killed them for memory)."""
    ended = []
    for container in client.containers.list(all=True, filters={"label": f"asci.broker={settings.broker_instance}"}):
        state = container.attrs["State"]
        if not state.get("Running"):
            ended.append({"name": container.name, "exit": state.get("ExitCode"), "oom_killed": state.get("OOMKilled")})
    return ended


# ------------------------------------------------------------------ one phase
def viewer_token(settings, user_id: int, session_id: int, kind: str) -> str:
    """A token the proxy under test accepts: this checkout's (single-use, with a nonce), or for the
    websockify plugin of before issue 21 the format it reads (``user.session.share``, same signer)."""
    if kind == "new":
        return vnc_tokens.make_token(settings, user_id, session_id)
    from itsdangerous import TimestampSigner

    from asci.http import secret_key

    return TimestampSigner(secret_key(settings), salt=vnc_tokens.SALT).sign(f"{user_id}.{session_id}.0".encode()).decode()


async def open_viewer(settings, world, session, url_base: str, kind: str = "new"
                      ) -> tuple[Viewer, asyncio.Task, object]:
    token = viewer_token(settings, world["ids"]["alice"], session["id"], kind)
    websocket = await ws_connect(url_base + token, subprotocols=["binary"], compression=None, max_size=None,
                                 open_timeout=60, ping_interval=None)
    viewer = Viewer(WebSocketStream(websocket), session["password"])
    await viewer.handshake()
    return viewer, asyncio.create_task(viewer.read_forever()), websocket


async def direct_round_trips(session, samples: int) -> list[float]:
    reader, writer = await asyncio.open_unix_connection(session["socket"])
    viewer = Viewer(SocketStream(reader, writer), session["password"])
    await viewer.handshake()
    task = asyncio.create_task(viewer.read_forever())
    try:
        times = [await viewer.round_trip() for _ in range(samples)]
    finally:
        task.cancel()
        writer.close()
    return times


async def phase(settings, world, sessions, count: int, spread: bool, hold: float, pid: int, kind: str = "new"
                ) -> dict:
    url_base = f"ws://127.0.0.1:{settings.websockify_port}/websockify?token="
    pss_before, _ = proxy_tree_pss_and_cpu(pid)
    targets = [sessions[i % len(sessions)] if spread else sessions[0] for i in range(count)]
    opened, failed, reasons = [], 0, {}
    began = time.monotonic()
    for batch in range(0, count, 50):
        results = await asyncio.gather(*(open_viewer(settings, world, s, url_base, kind) for s in targets[batch:batch + 50]),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                failed += 1
                reasons[f"{type(result).__name__}: {result}"[:120]] = reasons.get(f"{type(result).__name__}: {result}"[:120], 0) + 1
            else:
                opened.append(result)
    connect_s = time.monotonic() - began

    async def steady(viewer: Viewer) -> None:
        while True:
            await viewer.request(True)
            await asyncio.sleep(1.0)

    tickers = [asyncio.create_task(steady(v)) for v, _, _ in opened]
    await asyncio.sleep(hold)
    pss_with, _ = proxy_tree_pss_and_cpu(pid)
    samples = [v for v, _, _ in opened[:: max(1, len(opened) // 20)]][:20]
    via_proxy = []
    for viewer in samples:
        try:
            via_proxy.append(await viewer.round_trip())
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - counted as a drop below
            pass
    direct = await direct_round_trips(targets[0], len(samples) or 1)
    dropped = sum(1 for _, reader, _ in opened if reader.done())
    for ticker in tickers:
        ticker.cancel()
    # CPU per relayed MiB: ten viewers pull whole frames back to back
    pullers = [v for v, _, _ in opened[:10]]
    _, cpu_before = proxy_tree_pss_and_cpu(pid)
    received_before = sum(v.received for v in pullers)
    deadline = time.monotonic() + 5

    async def pull(viewer: Viewer) -> None:
        while time.monotonic() < deadline:
            await viewer.request(False)
            await asyncio.wait_for(viewer.updates.get(), 15)

    await asyncio.gather(*(pull(v) for v in pullers), return_exceptions=True)
    _, cpu_after = proxy_tree_pss_and_cpu(pid)
    relayed_mib = (sum(v.received for v in pullers) - received_before) / 2**20
    for _, reader, websocket in opened:
        reader.cancel()
        await websocket.close()
    await asyncio.sleep(2)
    ms = lambda values, q: round(statistics.quantiles(values, n=100)[q - 1] * 1000, 2) if len(values) > 1 else (
        round(values[0] * 1000, 2) if values else None)
    return {"viewers": count, "desktops": len(set(id(t) for t in targets)), "opened": len(opened),
            "failed_to_open": failed, "failures": reasons, "dropped_while_held": dropped, "connect_s": round(connect_s, 2),
            "pss_before_mib": round(pss_before / 2**20, 1), "pss_held_mib": round(pss_with / 2**20, 1),
            "mib_per_viewer": round((pss_with - pss_before) / 2**20 / max(1, len(opened)), 3),
            "round_trip_ms_p50": ms(via_proxy, 50), "round_trip_ms_p95": ms(via_proxy, 95),
            "direct_round_trip_ms_p50": ms(direct, 50), "direct_round_trip_ms_p95": ms(direct, 95),
            "relayed_mib": round(relayed_mib, 1),
            "cpu_s_per_relayed_mib": round((cpu_after - cpu_before) / relayed_mib, 4) if relayed_mib else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="10,100,1000")
    parser.add_argument("--desktops", type=int, default=10)
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--proxy", choices=["new", "websockify"], default="new")
    parser.add_argument("--before", type=Path, help="checkout whose websockify plugin --proxy websockify runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]

    client = docker.DockerClient(base_url=MAIN, version="1.41", timeout=120)
    repository = f"127.0.0.1:5000/asci-bench-{uuid.uuid4().hex[:8]}"
    base = build_base_image(load_definition(PROJECT_ROOT / "recipes", "debian12-mate"), client, log=lambda line: None)
    client.images.get(base).tag(repository, "v1")
    digest = shared_push(client, repository, "v1")  # the builder's credentials, as the tests push
    tmp = Path(tempfile.mkdtemp(prefix="asci-bench-viewers-"))
    settings = Settings(data_dir=tmp / "data", broker_instance=f"view{uuid.uuid4().hex[:6]}", log_format="text",
                        websockify_port=free_port(21000, 29000), session_start_timeout_s=180,
                        session_max_per_user=args.desktops, session_memory_guarantee_mb=64,
                        session_cpu_guarantee=0.05, vnc_token_ttl_s=600)
    db.upgrade(settings)
    world = make_world(settings, [], image=f"{repository}:v1", digest=digest)
    broker = service.Broker(settings, DockerBackend(timeout=180))
    with db.session_scope(settings) as session_db:
        register_node(settings, session_db, "local", MAIN)
    sessions = []
    result: dict = {"proxy": args.proxy, "machine": f"{os.cpu_count()} cores", "load_average_before": os.getloadavg()}
    proxy = None
    try:
        while len(sessions) < args.desktops:
            try:
                with db.session_scope(settings) as session_db:
                    row = broker.launch(session_db, session_db.merge(user(settings, world, "alice")), world["env"],
                                        "current", world["e1"])
                    sessions.append({"id": row.id, "socket": row.vnc_socket, "password": row.vnc_password})
            except service.BackendError as exc:  # a loaded machine: a desktop slow to greet is tried again
                result.setdefault("launch_retries", []).append(str(exc)[:200])
                if len(result["launch_retries"]) > 5:
                    raise
        result["phases"] = []
        plan = [(count, True) for count in counts] + [(count, False) for count in counts]  # one desktop last
        for count, spread in plan:
            proxy = start_proxy(settings, args.proxy, args.before, tmp / "proxy.log")  # a fresh one each phase
            time.sleep(2)
            try:
                outcome = asyncio.run(phase(settings, world, sessions, count, spread, args.hold, proxy.pid, args.proxy))
            finally:
                stop_proxy(proxy)
                proxy = None
            outcome["desktops_ended"] = ended_desktops(client, settings)
            print(json.dumps(outcome), file=sys.stderr)
            result["phases"].append(outcome)
    finally:
        if proxy is not None:
            stop_proxy(proxy)
        for container in client.containers.list(all=True, filters={"label": f"asci.broker={settings.broker_instance}"}):
            container.remove(force=True)
        for name in world["names"].values():
            try:
                client.volumes.get(f"asci-home-{name}").remove(force=True)
            except docker.errors.NotFound:
                pass
        client.images.remove(f"{repository}:v1", noprune=True)
    result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
