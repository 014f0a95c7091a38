"""The viewer proxy: every noVNC WebSocket of the platform in one asyncio process, relayed to its VNC server.

One event loop holds every viewer (websockify forked a Python process per WebSocket, about 19 MiB
each). The rules of what a token opens live in ``web.vnc_tokens``; this module only carries bytes and
runs the clocks:

- the handshake is refused (HTTP 403) unless ``vnc_tokens.admit`` admits the ``?token=``;
- a session on this machine is reached on its locked Unix socket; one on a node with an agent through
  that agent's relay, opened from the loop itself (TLS verified both ways, a single-use ticket per
  viewer): no bridge socket and no thread per viewer;
- the relay reads at most ``CHUNK`` bytes from the VNC socket at a time and sends each chunk before
  reading the next, so a slow viewer slows its VNC server down instead of filling the proxy's memory;
  a viewer whose send has not drained within ``send_timeout_s`` is closed with a reason (1013) and its
  page reconnects by itself; what a viewer sends is bounded by ``max_queue`` messages of ``max_size``;
- one loop touches every watched session every ``vnc_touch_interval_s`` (the idle clock) and one checks
  every viewer every ``viewer_check_interval_s`` (``vnc_tokens.still_admitted``: a revoked or changed
  share, a disabled owner, an ended session closes the viewer within that interval), marking the rest
  seen every ``SEEN_EVERY_S``. Database work runs in a small thread pool, never in the loop itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import http
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

import broker
from asci.config import Settings
from web import vnc_tokens

log = logging.getLogger(__name__)
CHUNK = 64 * 1024  # the most read from a VNC server before it is sent on
SEEN_EVERY_S = 10.0  # how often open connections are marked seen (broker.shares: stale after 30 s)
CLOSE_REVOKED = 1008  # policy violation: the token no longer admits this viewer
CLOSE_TOO_SLOW = 1013  # try again later: the viewer fell too far behind


@dataclass(eq=False)
class Viewer:
    """One connected viewer: what admitted it, its WebSocket, and its row in "who is connected"."""

    admission: vnc_tokens.Admission
    websocket: ServerConnection
    connection_id: int = 0
    opened: float = field(default_factory=time.monotonic)


@dataclass
class ProxyStats:
    """Counters for tests, benchmarks and the log."""

    admitted: int = 0
    refused: int = 0
    closed_revoked: int = 0
    closed_slow: int = 0
    bytes_to_viewers: int = 0
    bytes_to_servers: int = 0


class ViewerProxy:
    """The platform's noVNC WebSocket endpoint (``asci serve``'s ``websockify`` part)."""

    def __init__(self, settings: Settings, desktops: broker.Broker | None = None, *, send_timeout_s: float = 15.0, write_limit: int = 256 * 1024,
                 max_size: int = 1 << 20, max_queue: int = 16, db_threads: int = 4) -> None:
        self.settings = settings
        self.broker = desktops or broker.Broker(settings)  # lookups only: it never starts a desktop here
        self.send_timeout_s = send_timeout_s
        self.write_limit = write_limit
        self.max_size = max_size
        self.max_queue = max_queue
        self.viewers: set[Viewer] = set()
        self.stats = ProxyStats()
        self._admitted: dict[int, vnc_tokens.Admission] = {}  # id(websocket) -> admission, handshake to handler
        self._pool = concurrent.futures.ThreadPoolExecutor(db_threads, thread_name_prefix="viewer-db")

    # ---------------------------------------------------------------- serving
    async def serve(self, host: str, port: int, stop: asyncio.Event, started: asyncio.Event | None = None,
                    reuse_port: bool = False) -> None:
        """Accept viewers on ``host:port`` until ``stop`` is set; then close every viewer."""
        async with serve(self._handle, host, port, process_request=self._process_request,
                         select_subprotocol=_binary_if_offered, compression=None, max_size=self.max_size,
                         max_queue=self.max_queue, write_limit=self.write_limit, reuse_port=reuse_port,
                         server_header=None) as server:
            clocks = [asyncio.create_task(self._touch_loop()), asyncio.create_task(self._check_loop())]
            if started is not None:
                started.set()
            try:
                await stop.wait()
            finally:
                for task in clocks:
                    task.cancel()
                await self._close_all(server)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _db(self, function, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(function, *args))

    async def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        token = parse_qs(urlsplit(request.path).query).get("token", [""])[0]
        try:
            admission = await self._db(vnc_tokens.admit, self.settings, self.broker, token, True)
        except Exception:  # never let a lookup error open anything
            log.exception("VNC token lookup failed")
            admission = None
        if admission is None:
            self.stats.refused += 1
            log.warning("refused VNC token from %s", connection.remote_address)
            return connection.respond(http.HTTPStatus.FORBIDDEN, "this link does not open a desktop\n")
        self._admitted[id(connection)] = admission
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        admission = self._admitted.pop(id(websocket))
        try:
            if admission.relay is not None:
                reader, writer = await _connect_agent(admission.relay)
            else:
                reader, writer = await _connect_unix(admission.socket)
        except OSError as exc:
            log.warning("session %s: VNC socket unreachable: %s", admission.claim.session_id, exc)
            await websocket.close(1011, "the desktop's VNC server is not answering")
            return
        viewer = Viewer(admission, websocket)
        self.stats.admitted += 1
        self.viewers.add(viewer)
        try:
            viewer.connection_id = await self._db(vnc_tokens.record_opened, self.settings, admission.claim)
            upstream = asyncio.create_task(self._to_server(websocket, writer))
            downstream = asyncio.create_task(self._to_viewer(reader, viewer))
            done, pending = await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.debug("viewer relay ended: %r", task.exception())
        finally:
            writer.close()
            await websocket.close()
            if viewer.connection_id:
                try:
                    await self._db(vnc_tokens.record_closed, self.settings, [viewer.connection_id])
                except Exception:  # noqa: BLE001 - the viewer has gone either way
                    log.exception("could not record the end of viewer connection %s", viewer.connection_id)
            self.viewers.discard(viewer)

    async def _to_server(self, websocket: ServerConnection, writer: asyncio.StreamWriter) -> None:
        async for message in websocket:
            data = message.encode() if isinstance(message, str) else message
            writer.write(data)
            self.stats.bytes_to_servers += len(data)
            await writer.drain()

    async def _to_viewer(self, reader: asyncio.StreamReader, viewer: Viewer) -> None:
        websocket = viewer.websocket
        while True:
            data = await reader.read(CHUNK)
            if not data:
                await websocket.close(1000, "the desktop's VNC server closed the connection")
                return
            try:
                await asyncio.wait_for(websocket.send(data), self.send_timeout_s)
            except asyncio.TimeoutError:
                self.stats.closed_slow += 1
                log.warning("a viewer of session %s took over %.0f s to take one update: closed",
                            viewer.admission.claim.session_id, self.send_timeout_s)
                await _close_soon(websocket, CLOSE_TOO_SLOW, "the viewer fell too far behind; reconnect")
                return
            self.stats.bytes_to_viewers += len(data)

    # ---------------------------------------------------------------- clocks
    async def _touch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.vnc_touch_interval_s)
            sessions = {viewer.admission.claim.session_id for viewer in self.viewers}
            if sessions:
                try:
                    await self._db(vnc_tokens.touch_sessions, self.broker, sessions)
                except Exception:  # noqa: BLE001 - the next round tries again
                    log.exception("touching sessions failed")

    async def _check_loop(self) -> None:
        last_seen = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.viewer_check_interval_s)
            viewers = list(self.viewers)
            if not viewers:
                continue
            try:
                answers = await self._db(vnc_tokens.still_admitted, self.settings,
                                         [viewer.admission for viewer in viewers])
            except Exception as exc:  # noqa: BLE001 - a database hiccup must not end viewers' connections
                log.warning("viewer check failed: %s", exc)
                continue
            for viewer, admitted in zip(viewers, answers):
                if not admitted:
                    claim = viewer.admission.claim
                    log.warning("session %s: the token of user %s (share %s) no longer admits its viewer: "
                                "disconnected", claim.session_id, claim.user_id, claim.share_id)
                    self.stats.closed_revoked += 1
                    asyncio.create_task(_close_soon(viewer.websocket, CLOSE_REVOKED, "access changed; reconnect"))
            if time.monotonic() - last_seen >= SEEN_EVERY_S:
                last_seen = time.monotonic()
                live = [v.connection_id for v, ok in zip(viewers, answers) if ok and v.connection_id]
                try:
                    await self._db(vnc_tokens.record_seen, self.settings, live)
                except Exception as exc:  # noqa: BLE001
                    log.warning("marking viewer connections seen failed: %s", exc)

    async def _close_all(self, server: Server) -> None:
        server.close(close_connections=False)
        await asyncio.gather(*(_close_soon(v.websocket, 1001, "the platform is stopping") for v in list(self.viewers)),
                             return_exceptions=True)
        await server.wait_closed()


async def _connect_unix(path: str, tries: int = 6) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to a VNC server's socket; a full listen backlog (many viewers arriving at once) is waited
    out for a moment, as a blocking connect would, instead of refusing the viewer."""
    for attempt in range(tries):
        try:
            return await asyncio.open_unix_connection(path, limit=CHUNK)
        except (BlockingIOError, ConnectionRefusedError):
            if attempt == tries - 1 or not os.path.exists(path):
                raise
            await asyncio.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


async def _connect_agent(relay, timeout_s: float = 10.0) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a session's relay through its node's agent from the event loop: TLS with the agent's certificate
    verified (and the platform's presented), the request line with its single-use ticket, the agent's one-line
    answer; then the stream carries the VNC bytes (OSError with the agent's reason when it refuses)."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(relay.host, relay.port, ssl=relay.context, server_hostname=relay.host, limit=CHUNK),
        timeout_s)
    try:
        writer.write(relay.request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readuntil(b"\n"), timeout_s)
        refusal = relay.refusal(line)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError) as exc:
        writer.close()
        raise OSError(f"node {relay.node}: its agent did not open the relay: {exc!r}") from None
    except BaseException:
        writer.close()
        raise
    if refusal:
        writer.close()
        raise OSError(refusal)
    return reader, writer


def _binary_if_offered(connection: ServerConnection, offered) -> str | None:
    """noVNC may ask for websockify's ``binary`` subprotocol, or for none: both are served."""
    return "binary" if "binary" in offered else None


async def _close_soon(websocket: ServerConnection, code: int, reason: str, timeout: float = 2.0) -> None:
    """Close ``websocket`` with ``code``/``reason``; a viewer that does not answer the close is cut."""
    try:
        await asyncio.wait_for(websocket.close(code, reason), timeout)
    except (asyncio.TimeoutError, ConnectionClosed, OSError):
        websocket.transport.abort()


def run(settings: Settings, host: str = "127.0.0.1", port: int | None = None) -> None:
    """Run the viewer proxy in the foreground until SIGTERM or SIGINT (``asci part websockify``)."""
    import resource

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # two descriptors a viewer: take what we may
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await ViewerProxy(settings).serve(host, port or settings.websockify_port, stop)

    asyncio.run(main())
