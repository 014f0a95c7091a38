"""Helpers shared by the tests (plain functions and classes; the fixtures live in ``conftest.py``).

* ``need`` / ``require_programs``: a missing tool skips a test on a developer's machine but fails
  it under ``CI=true``, so a green CI run never hides a missing install step;
* ``free_port``, ``serving``: loopback servers for the tests;
* ``FakeBackend``, ``always_ready``, ``make_world``, ``user_of``: the broker without Docker;
* ``stand_in_vnc``: a process of ours serving a session's VNC socket, locked as the broker locks one;
* ``RecipesRepo``, ``recipe_text``, ``rpm_file``: recipes in a throw-away git repository, fixture RPMs;
* ``remove_sessions``, ``images_named``: clean-up of what a test left on a Docker daemon;
* ``csrf_of``, ``login``: a Flask test client logged in through the real form.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from asci import accounts, net
from asci.config import PROJECT_ROOT
from asci.db import session_scope
from broker import NodeUnreachable, containers
from broker.backends.base import Backend, Capacity, Managed
from broker.errors import BadRequest, NotFound
from broker.file_channel import AlreadyExists, Download, Entry, FileChannel, IsAFolder, check_root

TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
NVIDIA_SMI = FIXTURES / "nvidia-smi"
RPM_FIXTURES = FIXTURES / "rpms"
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
TEST_LABEL = "asci.test"
PASSWORD = "correct-horse-1"
GIT_ENV = {"GIT_AUTHOR_NAME": "ASCI tests", "GIT_AUTHOR_EMAIL": "tests@example.invalid",
           "GIT_COMMITTER_NAME": "ASCI tests", "GIT_COMMITTER_EMAIL": "tests@example.invalid"}


# ------------------------------------------------------------------ tools

def need(condition: bool, why: str) -> None:
    """Skip the test when ``condition`` is false, or fail it under CI (where everything must be installed)."""
    if condition:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI=true: the test command must install it)")
    pytest.skip(why)


def require_programs(*programs: str) -> None:
    """``need`` every program on the PATH."""
    missing = [program for program in programs if shutil.which(program) is None]
    need(not missing, f"not installed: {', '.join(missing)}")


def free_port(start: int = 5900, end: int = 6900) -> int:
    """A TCP port on 127.0.0.1 nobody listens on, chosen at random in [start, end)."""
    port = net.free_port(random.sample(range(start, end), end - start))
    if port is None:
        raise RuntimeError(f"no free port in {start}-{end}")
    return port


@contextlib.contextmanager
def serving(app, port: int | None = None) -> Iterator[str]:
    """``app`` served (threaded) on loopback, a free port unless given, for the ``with`` block; yields its URL."""
    from werkzeug.serving import make_server

    port = port or free_port(21000, 29000)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


def reset_postgres(url: str) -> None:
    """Drop and recreate the public schema of the PostgreSQL database at ``url`` (tests only)."""
    from sqlalchemy import text

    from asci import db

    engine = db.make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    db.engine_for.cache_clear()


# ----------------------------------------------------------------- broker

class FakeBackend(Backend):
    """A broker backend that records create parameters instead of starting containers.

    Its state (``{"fake_id": ...}``) shares no key with the real backends': the broker must hand
    it back unread."""

    def __init__(self) -> None:
        self.created: dict[str, dict] = {}
        self.running: dict[str, tuple[str, dict]] = {}
        self.down: set[str] = set()
        self.exec_results: dict[str, tuple[int, str]] = {}
        self.homes: dict[str, "MemoryFileChannel"] = {}  # each running desktop's files
        self.capacities: dict[str, Capacity] = {}  # what each node's "engine" reports (default 16 CPUs, 64 GiB)
        self.lock = threading.Lock()

    def _check(self, node) -> None:
        if node.name in self.down:
            raise NodeUnreachable(f"node {node.name} does not answer")

    def ping(self, node):
        self._check(node)

    def ensure_image(self, node, image, log=None):
        self._check(node)
        return False

    def capacity(self, node):
        self._check(node)
        return self.capacities.get(node.name, Capacity(16.0, 64 << 30))

    def start(self, node, spec):
        self._check(node)
        params = containers.create_params(spec)
        cid = uuid.uuid4().hex
        with self.lock:
            self.created[cid] = {"node": node.name, **params}
            self.running[cid] = (node.name, params)
        return {"fake_id": cid}

    def stop(self, node, state):
        self._check(node)
        with self.lock:
            self.running.pop(state["fake_id"], None)

    def poll(self, node, state):
        self._check(node)
        return None if state.get("fake_id") in self.running else "missing"

    def container_id(self, node, state):
        return state.get("fake_id", "")

    def list_managed(self, node, instance):
        self._check(node)
        return [Managed(int(p["labels"][containers.LABEL_SESSION]), {"fake_id": cid}, True, p["labels"])
                for cid, (name, p) in self.running.items()
                if name == node.name and p["labels"].get(containers.LABEL_INSTANCE) == instance]

    def logs(self, node, state, tail=50):
        return ""

    def exec(self, node, state, command, user, environment):
        return self.exec_results.get(command[-1], (0, ""))

    def remove_volume(self, node, name):
        pass

    def file_channel(self, node, state):
        self._check(node)
        with self.lock:
            return self.homes.setdefault(state.get("fake_id", ""), MemoryFileChannel())

    def close(self):
        pass


class MemoryFileChannel(FileChannel):
    """A desktop's files in memory (``files``: path -> bytes, ``folders``, ``data`` for /data), with the
    engine channel's answers for what is missing, a folder where a file is expected and the reverse."""

    def __init__(self) -> None:
        self.roots = {"home": ({}, set()), "data": ({}, set())}

    def _root(self, root):
        return self.roots[check_root(root)]

    def add(self, root: str, path: str, data: bytes) -> None:
        files, folders = self._root(root)
        files[path] = data
        parts = path.split("/")[:-1]
        folders.update("/".join(parts[:i + 1]) for i in range(len(parts)))

    def stat(self, root, path):
        files, folders = self._root(root)
        if path in files:
            return Entry(path.rpartition("/")[2], "file", len(files[path]), 0.0)
        if path == "" or path in folders:
            return Entry(path.rpartition("/")[2], "dir", 4096, 0.0)
        raise NotFound(f"{path}: no such file or folder")

    def listing(self, root, path):
        if self.stat(root, path).type != "dir":
            raise IsAFolder(f"{path}: not a folder")
        files, folders = self._root(root)
        prefix = path + "/" if path else ""
        names = {p[len(prefix):].split("/")[0] for p in [*files, *folders] if p.startswith(prefix) and p != path}
        return sorted((self.stat(root, prefix + name) for name in names), key=lambda e: e.name)

    def read(self, root, path):
        entry = self.stat(root, path)
        if entry.type == "dir":
            raise IsAFolder(f"{path}: a folder")
        data = self._root(root)[0][path]
        return Download(len(data), iter([data[i:i + 65536] for i in range(0, len(data), 65536)] or [b""]))

    def archive(self, root, path):
        import io
        import tarfile

        self.stat(root, path)
        files, folders = self._root(root)
        buffer = io.BytesIO()
        top = path.rpartition("/")[2] or "home"
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for name, data in sorted(files.items()):
                if path == "" or name.startswith(path + "/"):
                    info = tarfile.TarInfo(top + "/" + name[len(path):].lstrip("/"))
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        return iter([buffer.getvalue()])

    def write(self, path, source, size, overwrite):
        files, folders = self._root("home")
        if path in folders:
            raise IsAFolder(f"{path}: a folder is there")
        if path in files and not overwrite:
            raise AlreadyExists(f"{path}: a file is there")
        parts = path.split("/")
        for end in range(1, len(parts)):
            if "/".join(parts[:end]) in files:
                raise AlreadyExists(f"{path}: a file is in the way")
        data = source.read(size)
        if len(data) != size:
            raise BadRequest(f"{path}: cut short")
        self.add("home", path, data)
        return Entry(path.rpartition("/")[2], "file", size, 0.0)

    def delete(self, path):
        entry = self.stat("home", path)
        if entry.type == "dir":
            raise IsAFolder(f"{path}: a folder")
        del self._root("home")[0][path]


def always_ready(folder, uid, container_id) -> bool:
    """A readiness check that says every desktop answers at once."""
    return True


def bind_unix(path) -> socket.socket:
    """A listening Unix socket at ``path`` (a long path is reached through its folder's descriptor)."""
    path = Path(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        listener.bind(f"/proc/self/fd/{folder}/{path.name}")
    finally:
        os.close(folder)
    listener.listen(8)
    return listener


@contextlib.contextmanager
def stand_in_vnc(socket_path, uid: int, greeting: bytes = b"RFB 003.008\n", lock: bool = True) -> Iterator[list]:
    """Serve ``greeting`` on a session's socket path (made as the session's ``uid``, then locked like the
    broker locks a real desktop's); yields the list of accepted connections."""
    from broker import rundir

    path = Path(socket_path)
    listener = bind_unix(path)
    os.chown(path, uid, uid)
    if lock:
        rundir.lock(rundir.SessionDir(path.parent.parent), uid)
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            accepted.append(connection)
            try:
                connection.sendall(greeting)
            except OSError:
                pass

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield accepted
    finally:
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        listener.close()
        for connection in accepted:
            connection.close()


def make_world(settings, nodes: list[dict], image: str = "127.0.0.1:5000/asci-test:v1",
               digest: str = "sha256:" + "0" * 64, data_path: str | None = None) -> dict:
    """Users alice/bob (members of E1/E2, password ``PASSWORD``; tokens with the ``sessions`` scope) and
    root (admin; its token also has ``admin`` and ``metrics``), environment
    'mx-…' with version v1 (and a failed v0), and ``nodes`` (``nvidia_smi`` names a recorded output).

    The experiments' data folder is ``data_path``, by default a folder made under the first
    experiment data root of ``settings`` (where the broker allows data to be mounted from)."""
    from broker.gpus import parse_nvidia_smi
    from broker.models import Experiment, ExperimentEnvironment, ExperimentMember, Node
    from builder.models import Environment, EnvironmentVersion, VersionStatus

    suffix = uuid.uuid4().hex[:6]
    if data_path is None:
        folder = settings.data_roots[0] / f"world-{suffix}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run1.h5").write_text("frames\n")
        data_path = str(folder)
    with session_scope(settings) as db:
        alice = accounts.create_user(db, f"alice-{suffix}", PASSWORD, uid=4242, gid=4242)
        bob = accounts.create_user(db, f"bob-{suffix}", PASSWORD)
        root = accounts.create_user(db, f"root-{suffix}", PASSWORD, is_admin=True)
        tokens = {name: accounts.issue_token(db, row, scopes=scopes) for name, row, scopes in
                  (("alice", alice, "sessions"), ("bob", bob, "sessions"), ("root", root, "sessions admin metrics"))}
        env = Environment(name=f"mx-{suffix}", current_version="v1")
        db.add(env)
        db.flush()
        db.add(EnvironmentVersion(environment_id=env.id, version="v1", status=VersionStatus.SUCCEEDED,
                                  image_reference=image, image_digest=digest))
        db.add(EnvironmentVersion(environment_id=env.id, version="v0", status=VersionStatus.FAILED,
                                  image_reference=image, image_digest=""))
        e1 = Experiment(code=f"E1-{suffix}", title="one", data_path=data_path)
        e2 = Experiment(code=f"E2-{suffix}", title="two", data_path=data_path)
        db.add_all([e1, e2])
        db.flush()
        db.add_all([ExperimentMember(experiment_id=e1.id, user_id=alice.id),
                    ExperimentMember(experiment_id=e2.id, user_id=bob.id),
                    ExperimentEnvironment(experiment_id=e1.id, environment_id=env.id),
                    ExperimentEnvironment(experiment_id=e2.id, environment_id=env.id)])
        for spec in nodes:
            spec = dict(spec)
            smi = spec.pop("nvidia_smi", None)
            db.add(Node(gpus=parse_nvidia_smi((NVIDIA_SMI / smi).read_text()) if smi else [], **spec))
        ids = {"alice": alice.id, "bob": bob.id, "root": root.id}
        return {"env": env.name, "e1": e1.code, "e2": e2.code, "tokens": tokens, "ids": ids, "suffix": suffix,
                "names": {"alice": alice.username, "bob": bob.username, "root": root.username}}


def add_members(settings, world: dict, count: int, experiment: str = "e1") -> list[str]:
    """``count`` more users (``member00``...), members of the world's experiment, each with an API token in
    ``world["tokens"]``, id in ``world["ids"]`` and name in ``world["names"]``; returns their keys."""
    from sqlalchemy import select

    from broker.models import Experiment, ExperimentMember

    keys = []
    with session_scope(settings) as db:
        row = db.scalar(select(Experiment).where(Experiment.code == world[experiment]))
        for number in range(count):
            key = f"member{number:02d}"
            member = accounts.create_user(db, f"{key}-{world['suffix']}", PASSWORD)
            db.add(ExperimentMember(experiment_id=row.id, user_id=member.id))
            db.flush()
            world["tokens"][key], world["ids"][key], world["names"][key] = (
                accounts.issue_token(db, member), member.id, member.username)
            keys.append(key)
    return keys
def publisher(settings, username: str, repo: str, scopes: str | None = None) -> str:
    """Repository ``repo`` (created when missing), user ``username`` (created when missing) granted the
    right to publish into it, and a new token of theirs (scope ``publish:<repo>`` unless given)."""
    from sqlalchemy import select

    import rpmrepo

    rpmrepo.create_repo(settings, repo, exist_ok=True)
    with session_scope(settings) as db:
        user = db.scalar(select(accounts.User).where(accounts.User.username == username)) \
            or accounts.create_user(db, username)
        rpmrepo.grant_publisher(db, repo, user)
        return accounts.issue_token(db, user, "tests", scopes=scopes or f"publish:{repo}")


def user_of(settings, world: dict, who: str) -> accounts.User:
    """A detached copy of one of the world's users."""
    with session_scope(settings) as db:
        row = db.get(accounts.User, world["ids"][who])
        db.expunge(row)
        return row


def remove_sessions(docker_url: str, broker_instance: str, user_names) -> None:
    """Remove one broker instance's session containers (printing their logs) and the users' home volumes."""
    import docker

    try:
        client = docker.DockerClient(base_url=docker_url, timeout=20)
        for container in client.containers.list(all=True, filters={"label": f"asci.broker={broker_instance}"}):
            print(container.name, container.logs(tail=30).decode(errors="replace"))
            container.remove(force=True)
        for name in user_names:
            try:
                client.volumes.get(f"asci-home-{name}").remove(force=True)
            except docker.errors.NotFound:
                pass
        client.close()
    except docker.errors.DockerException:
        pass  # a daemon the test stopped on purpose


def images_named(client, name: str) -> list[str]:
    """Local tags and digests of images of environment ``name`` (reproductions included)."""
    return [ref for image in client.images.list() for ref in image.tags + image.attrs.get("RepoDigests", [])
            if f"/{name}:" in ref or f"/{name}@" in ref]


class Refused(Exception):
    """websockify answered the WebSocket upgrade with something other than 101 (or closed)."""


def websocket_open(port: int, token: str, timeout: float = 10) -> tuple[socket.socket, bytes]:
    """Open ``ws://127.0.0.1:<port>/websockify?token=...`` as noVNC does (binary subprotocol); the
    connected socket and any bytes already received after the handshake."""
    import base64

    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /websockify?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Protocol: binary\r\n\r\n").encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            sock.close()
            raise Refused(f"closed during the handshake: {data[:200]!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise Refused(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    return sock, rest


@contextlib.contextmanager
def websocket_bridge(port: int, token, path) -> Iterator[str]:
    """A Unix socket at ``path`` whose every connection is carried through websockify's WebSocket with
    ``token`` (framing as a browser does), so ``asci.rfb`` can talk VNC through the proxy; yields the path.
    ``token`` may be a callable giving a fresh token for each connection (a token opens one WebSocket once,
    as the viewer asks for a new one every time)."""
    listener = bind_unix(path)

    def pump_up(local: socket.socket, remote: socket.socket) -> None:  # local bytes -> masked binary frames
        try:
            while True:
                data = local.recv(65536)
                if not data:
                    break
                mask = os.urandom(4)
                length = len(data)
                header = bytes([0x82]) + (bytes([0x80 | length]) if length < 126 else
                                          bytes([0x80 | 126]) + length.to_bytes(2, "big") if length < 65536 else
                                          bytes([0x80 | 127]) + length.to_bytes(8, "big"))
                remote.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        except OSError:
            pass
        finally:
            for end in (local, remote):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def pump_down(remote: socket.socket, pending: bytes, local: socket.socket) -> None:  # frames -> bytes
        buffer = bytearray(pending)

        def need(count: int) -> bool:
            while len(buffer) < count:
                chunk = remote.recv(65536)
                if not chunk:
                    return False
                buffer.extend(chunk)
            return True

        try:
            while need(2):
                opcode, length = buffer[0] & 0x0F, buffer[1] & 0x7F
                offset = 2
                if length == 126:
                    if not need(4):
                        break
                    length, offset = int.from_bytes(buffer[2:4], "big"), 4
                elif length == 127:
                    if not need(10):
                        break
                    length, offset = int.from_bytes(buffer[2:10], "big"), 10
                if not need(offset + length):
                    break
                payload = bytes(buffer[offset:offset + length])
                del buffer[:offset + length]
                if opcode == 0x8:
                    break
                if opcode in (0x0, 0x1, 0x2):
                    local.sendall(payload)
        except OSError:
            pass
        finally:
            try:
                local.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def serve() -> None:
        while True:
            try:
                local, _ = listener.accept()
            except OSError:
                return
            try:
                remote, pending = websocket_open(port, token() if callable(token) else token)
            except (OSError, Refused):
                local.close()
                continue
            remote.settimeout(None)
            threading.Thread(target=pump_up, args=(local, remote), daemon=True).start()
            threading.Thread(target=pump_down, args=(remote, pending, local), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield str(path)
    finally:
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()


# ---------------------------------------------------------------- recipes

class RecipesRepo:
    """A git repository whose work tree is a recipes folder: ``base/`` (copied from the project, so
    base image tags are unchanged), ``environments/schema.yaml``, and the recipes a test writes."""

    def __init__(self, root: Path, project_recipes: tuple[str, ...] = ()):
        import git

        self.root = root
        shutil.copytree(PROJECT_ROOT / "recipes" / "base", root / "base")
        (root / "environments").mkdir()
        for name in ("schema", *project_recipes):
            shutil.copy(PROJECT_ROOT / "recipes" / "environments" / f"{name}.yaml", root / "environments")
        self.repo = git.Repo.init(root)
        self.commit("recipes")

    def write(self, name: str, text: str, commit: bool = True) -> Path:
        """Write recipe ``name`` (and commit it)."""
        path = self.root / "environments" / f"{name}.yaml"
        path.write_text(text)
        if commit:
            self.commit(f"recipe {name}")
        return path

    def commit(self, message: str) -> str:
        """Commit everything; returns the commit id."""
        self.repo.git.add(A=True)
        self.repo.git.commit("-m", message, "--allow-empty", env=GIT_ENV)
        return self.repo.head.commit.hexsha

    def tags(self) -> list[str]:
        return sorted(t.name for t in self.repo.tags)


def recipe_text(name: str, packages: list[str], checks: list[str] | None = None, extra: str = "") -> str:
    """A valid recipe on the Debian base with one launcher."""
    lines = [f"name: {name}", "beamline: TEST", "description: Builder integration test environment",
             "base: debian12-mate", "packages:", *[f"  - {p}" for p in packages],
             "env:", "  TEST_GREETING: hello world", "launchers:", "  - name: Demo Viewer",
             "    command: /usr/bin/asci-demo-viewer", "    icon: applications-science"]
    if checks:
        lines += ["checks:", *[f"  - {c}" for c in checks]]
    return "\n".join(lines) + "\n" + extra


def rpm_file(folder: Path, name: str, version: str) -> Path:
    """The built fixture RPM of ``name`` at ``version`` (flat folder, canonical names)."""
    matches = sorted(folder.glob(f"{name}-{version}-*.rpm"))
    assert matches, f"no {name}-{version} in {folder}"
    return matches[0]


# -------------------------------------------------------------------- web

def csrf_of(html: str) -> str:
    """The CSRF token of a page (form field or meta tag)."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html) or re.search(
        r'<meta name="csrf-token" content="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client, username: str, password: str = PASSWORD, **request_options):
    """Log a Flask test client in through the login form; returns the reply (``environ``,
    ``headers``... are passed on to both requests)."""
    options = {"environ_base": request_options.pop("environ")} if "environ" in request_options else {}
    options.update(request_options)
    token = csrf_of(client.get("/login", **options).get_data(as_text=True))
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token}, **options)


def browser_log_in(page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Log a Playwright page in through the login form."""
    page.goto(f"{base_url}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_load_state()


def wait_for_js(page, expression: str, timeout: float = 30_000, interval_ms: int = 100):
    """Poll ``expression`` in ``page`` until it is truthy (its value) or ``timeout`` ms pass (AssertionError).

    Playwright's ``wait_for_function`` evaluates its predicate with ``eval`` inside the page, which the
    pages' Content-Security-Policy (no ``unsafe-eval``) refuses; ``page.evaluate`` goes through the
    debugging protocol and is not subject to the policy."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout / 1000:.0f} s: {expression[:120]}")
        page.wait_for_timeout(interval_ms)


# ------------------------------------------------------------------ RPM headers

FORGERY_PLACEHOLDER = b"~BUILDTIME^0~REQ^evil-dep~PROV^kernel"
FORGERY = b"\nBUILDTIME\t0\nREQ\tevil-dep\nPROV\tkernel"


def forge_rpm_header(source: Path, target: Path, old: bytes = FORGERY_PLACEHOLDER, new: bytes = FORGERY) -> Path:
    """Copy an RPM replacing ``old`` by ``new`` (same length) in its main header, with the header's
    SHA-1 and SHA-256 and the header+payload MD5 in the signature header recomputed: what anyone
    can do to an unsigned package; ``rpmkeys -K --nosignature`` still says "digests OK"."""
    import hashlib
    import struct

    assert len(old) == len(new)
    data = bytearray(source.read_bytes())

    def header_at(offset: int) -> tuple[int, int, int]:  # index entries, start of the store, end
        assert data[offset:offset + 3] == b"\x8e\xad\xe8", "not an RPM header"
        entries, size = struct.unpack(">II", data[offset + 8:offset + 16])
        store = offset + 16 + entries * 16
        return entries, store, store + size

    signature_entries, signature_store, signature_end = header_at(96)  # after the 96-byte lead
    main = signature_end + (-signature_end % 8)
    _, _, main_end = header_at(main)
    at = data.index(old, main, main_end)
    data[at:at + len(old)] = new
    header = bytes(data[main:main_end])
    digests = {269: hashlib.sha1(header).hexdigest().encode(), 273: hashlib.sha256(header).hexdigest().encode(),
               1004: hashlib.md5(bytes(data[main:])).digest()}
    for number in range(signature_entries):
        entry = 96 + 16 + number * 16
        tag, _type, offset, _count = struct.unpack(">iiii", data[entry:entry + 16])
        if tag in digests:
            data[signature_store + offset:signature_store + offset + len(digests[tag])] = digests[tag]
    target.write_bytes(bytes(data))
    return target
# ----------------------------------------------------------------- registries

def shared_registry() -> dict:
    """Settings for the shared registry (127.0.0.1:5000) the test command started: its push endpoint and
    the builder's password when it has them (``ASCI_REGISTRY_PUSH``, ``ASCI_REGISTRY_PASSWORD``)."""
    return {key: os.environ[f"ASCI_{key.upper()}"] for key in ("registry_push", "registry_password")
            if os.environ.get(f"ASCI_{key.upper()}")}


def shared_push(client, repository: str, tag: str) -> str:
    """``docker push`` of ``repository:tag`` (on 127.0.0.1:5000) through the shared registry's push
    endpoint with the builder's credentials when it has them; returns the digest."""
    from builder.docker_engine import push_image

    shared = shared_registry()
    host, path = repository.split("/", 1)
    auth = ("asci-builder", shared["registry_password"]) if "registry_password" in shared else None
    target = f"{shared.get('registry_push', host)}/{path}"
    if target != repository:
        client.images.get(f"{repository}:{tag}").tag(target, tag)
    try:
        return push_image(client, target, tag, log=lambda line: None, auth=auth)
    finally:
        if target != repository:
            client.images.remove(f"{target}:{tag}", noprune=True)


def shared_auth():
    """requests' ``auth`` for writes to the shared registry (None: it takes anonymous writes)."""
    password = shared_registry().get("registry_password")
    return ("asci-builder", password) if password else None


# ----------------------------------------------------------------- registries of our own

class PrivateRegistry:
    """A docker-registry of our own behind the authenticating proxy (nginx), as ``asci registry setup``
    writes them: own port, storage, credentials; started and stopped by the test that made it."""

    def __init__(self, root: Path, port: int, push_port: int, nginx_user: str = "www-data",
                 front: Path | None = None):
        from builder.registry_setup import RegistryFiles, ensure_credentials, write_configs

        self.root, self.port = root, port
        self.host, self.push_host = f"127.0.0.1:{port}", f"127.0.0.1:{push_port}"
        self.files = RegistryFiles(root / "auth", root / "storage", root / "registry-config.yml", front)
        self.user = "asci-builder"
        self.password = ensure_credentials(self.files, self.user, group=nginx_user)
        write_configs(self.files, self.host, self.push_host, user=nginx_user)
        self.processes: list = []

    @property
    def auth(self) -> tuple[str, str]:
        return (self.user, self.password)

    def settings(self, settings):
        """``settings`` writing to this registry with its credentials."""
        return settings.replace(registry=self.host, registry_push=self.push_host, registry_password=self.password,
                                registry_config=self.files.registry_config)

    def start(self) -> "PrivateRegistry":
        import subprocess
        import time

        import requests

        log = open(self.root / "registry.log", "ab")
        self.processes.append(subprocess.Popen(["docker-registry", "serve", str(self.files.registry_config)],
                                               stdout=log, stderr=log, preexec_fn=lambda: os.umask(0o007)))
        self.processes.append(subprocess.Popen(["nginx", "-c", str(self.files.nginx_config), "-g", "daemon off;"],
                                               stdout=log, stderr=log))
        for _ in range(100):
            try:
                if requests.get(f"http://{self.host}/v2/_catalog", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"private registry on {self.host} did not start: "
                           f"{(self.root / 'registry.log').read_text()[-500:]}")

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=10)
            except Exception:  # noqa: BLE001 - a process that does not stop is killed
                process.kill()
        self.processes.clear()

    def storage_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files.storage.rglob("*") if p.is_file() and not p.is_symlink())


def wait_until(condition, timeout: float, what: str, pause: float = 0.5):
    """``condition()``'s first true value, polled every ``pause`` seconds; the test fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def extract_all(archive, folder, kind: str = "data") -> None:
    """``archive.extractall(folder)`` with tarfile's ``kind`` filter ("data" or "tar") where this Python has
    it (3.11.4 and later); on an older 3.11 (Debian 12's 3.11.2) the members are checked by hand first: no
    absolute name, nothing climbing out with "..", and with "data" no link at all."""
    import tarfile

    if hasattr(tarfile, "data_filter"):
        archive.extractall(folder, filter=kind)
        return
    for member in archive.getmembers():
        parts = Path(member.name).parts
        if member.name.startswith("/") or ".." in parts:
            raise AssertionError(f"archive member {member.name!r} leaves the folder")
        if kind == "data" and (member.issym() or member.islnk()):
            raise AssertionError(f"archive member {member.name!r} is a link")
        if member.isdev():
            raise AssertionError(f"archive member {member.name!r} is a device")
    archive.extractall(folder)
