"""Shared fixtures: settings on a fresh data directory (SQLite and PostgreSQL), the Docker daemon,
the base image in the registry, the far nodes (``tests/farnodes.py``, one cluster a session), the
fixture RPMs, a recipes git repository, a swapped broker.

Helpers that are not fixtures live in ``tests/support.py``. Markers (registered here):
``integration`` real services, ``docker`` a Docker daemon, ``postgres`` the PostgreSQL server
named by ``ASCI_TEST_POSTGRES_URL``, ``browser`` Chromium, ``slow`` more than a few seconds.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from asci import db
from asci.config import Settings
from tests.support import ARTIFACTS, RPM_FIXTURES, TEST_LABEL, FakeBackend, RecipesRepo, always_ready, need, \
    require_programs, reset_postgres, shared_push, shared_registry

POSTGRES_URL_VAR = "ASCI_TEST_POSTGRES_URL"

MARKERS = {
    "integration": "uses real services (createrepo_c, dnf, registry, ...)",
    "docker": "needs a Docker daemon",
    "postgres": f"needs the PostgreSQL server named by {POSTGRES_URL_VAR}",
    "browser": "drives Debian's Chromium through Playwright",
    "slow": "takes more than a few seconds",
}


def pytest_configure(config: pytest.Config) -> None:
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")


def _sqlite_settings(tmp_path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", **shared_registry())
    db.upgrade(settings)
    return settings


def _postgres_settings(tmp_path) -> Settings:
    url = os.environ.get(POSTGRES_URL_VAR)
    need(bool(url), f"{POSTGRES_URL_VAR} is not set: the test command must start PostgreSQL")
    reset_postgres(url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url, **shared_registry())
    db.upgrade(settings)
    return settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings on a fresh data directory with a migrated SQLite database."""
    return _sqlite_settings(tmp_path)


@pytest.fixture
def pg_settings(tmp_path) -> Settings:
    """Settings on a fresh data directory with a freshly migrated PostgreSQL schema."""
    return _postgres_settings(tmp_path)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_settings(request, tmp_path) -> Settings:
    """The same test on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return _sqlite_settings(tmp_path)
    return _postgres_settings(tmp_path)


# ------------------------------------------------------------ services

@pytest.fixture(scope="session")
def docker_client():
    """A client for the local Docker daemon (the test command starts it)."""
    import docker

    from builder.docker_engine import client_for

    try:
        client = client_for("unix:///var/run/docker.sock")
        client.ping()
    except (docker.errors.DockerException, Exception) as exc:  # noqa: BLE001 - any failure: no daemon
        need(False, f"no Docker daemon answers on /var/run/docker.sock ({exc})")
    dangling_before = {image.id for image in client.images.list(filters={"dangling": True})}
    yield client
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)
    # Failed test builds leave their finished steps behind as untagged cache images: remove the ones
    # this session made (never those that were there before it).
    for image in client.images.list(filters={"dangling": True}):
        if image.id not in dangling_before:
            try:
                client.images.remove(image.id)
            except Exception:  # noqa: BLE001 - in use by another image or container: not ours to force
                pass
    client.close()


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    """The debian12-mate base image tag, built when missing (set-up normally built it)."""
    from asci.config import PROJECT_ROOT
    from builder.base_images import build_base_image, load_definition

    return build_base_image(load_definition(PROJECT_ROOT / "recipes", "debian12-mate"), docker_client,
                            log=lambda line: None)


@pytest.fixture(scope="session")
def pushed_image(docker_client, base_image):
    """``(reference, digest)`` of the base image pushed as 127.0.0.1:5000/asci-test-<uuid>:v1."""
    import uuid

    repository = f"127.0.0.1:5000/asci-test-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(base_image).tag(repository, "v1")
    digest = shared_push(docker_client, repository, "v1")
    yield f"{repository}:v1", digest
    docker_client.images.remove(f"{repository}:v1", noprune=True)


@pytest.fixture(scope="session")
def desktop_image(pushed_image):
    """``registry/name@sha256:...`` of the desktop image pushed for this test session."""
    reference, digest = pushed_image
    return f"{reference.rsplit(':', 1)[0]}@{digest}"


@pytest.fixture(scope="session")
def far_cluster(tmp_path_factory, desktop_image):
    """Two far nodes (``tests/farnodes.py``): own namespaces, own engines and agents on 127.0.0.2 and
    127.0.0.3, TLS only, the platform's data hidden from them; the desktop image pulled into each.

    Here (not in a folder's conftest) so that integration and browser tests share one cluster a session."""
    from broker.backends.base import NodeRef
    from broker.backends.docker import DockerBackend
    from tests.farnodes import FarCluster, far_hidden

    cluster = FarCluster(far_hidden(tmp_path_factory))
    try:
        cluster.start()
        backend = DockerBackend()
        for node in cluster.nodes.values():
            tls = node.tls()
            backend.ensure_image(NodeRef(node.name, node.docker_url, tls["tls_ca"], tls["tls_cert"], tls["tls_key"]),
                                 desktop_image)
        backend.close()
    except Exception:
        for node in cluster.nodes.values():
            print(node.log_tail())
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture
def artifacts_dir(request):
    """A folder under test-artifacts/ named after the test, kept after the run."""
    folder = ARTIFACTS / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# ------------------------------------------------------------ RPMs and recipes

@pytest.fixture(scope="session")
def fixture_rpms(tmp_path_factory) -> Path:
    """The packages of tests/fixtures/rpms/packages.txt, built once per session with rpmbuild."""
    require_programs("rpmbuild", "createrepo_c", "dnf")
    out = tmp_path_factory.mktemp("fixture-rpms")
    subprocess.run([str(RPM_FIXTURES / "build.sh"), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture
def recipes_repo(tmp_path) -> RecipesRepo:
    """A recipes folder under git with the base definitions and the schema (add recipes with ``write``)."""
    return RecipesRepo(tmp_path / "recipes")


# ------------------------------------------------------------ the broker

@pytest.fixture
def make_broker():
    """``make_broker(settings, backend=None, ready=None)``: a Broker for ``settings`` (a ``FakeBackend`` and a
    desktop that answers at once by default), passed to whatever needs it (``create_app(..., broker=)``);
    its launch runner is shut down afterwards."""
    from broker import Broker

    made = []

    def make(settings, backend=None, ready=None):
        if backend is None:
            backend, ready = FakeBackend(), ready or always_ready
        broker = Broker(settings, backend, ready=ready)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.close()


@pytest.fixture
def private_registry(docker_client):
    """A registry of this test's own behind the authenticating proxy (``tests.support.PrivateRegistry``);
    its storage, processes and the local images tagged with its address go afterwards."""
    import shutil
    import tempfile

    from tests.support import PrivateRegistry, free_port

    require_programs("docker-registry", "nginx", "htpasswd")
    # Under /tmp and traversable: the proxy's workers (www-data) read the htpasswd and reach the socket.
    root = Path(tempfile.mkdtemp(prefix="asci-registry-"))
    root.chmod(0o711)
    registry = PrivateRegistry(root, free_port(32000, 36000), free_port(36000, 40000)).start()
    yield registry
    registry.stop()
    for image in docker_client.images.list():  # untag only: an image may also be the base others use
        for reference in image.tags + image.attrs.get("RepoDigests", []):
            if reference.startswith((registry.host + "/", registry.push_host + "/")):
                try:
                    docker_client.images.remove(reference, noprune=True)
                except Exception:  # noqa: BLE001 - gone already, or in use by a container of the test
                    pass
    shutil.rmtree(root, ignore_errors=True)
