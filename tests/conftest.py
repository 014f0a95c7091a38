"""Shared fixtures: settings on a fresh data directory, on SQLite and PostgreSQL.

Markers (registered in pyproject/tox via pytest.ini options here):
``integration`` real services, ``docker`` a Docker daemon, ``postgres`` the
PostgreSQL server named by ``ASCI_TEST_POSTGRES_URL``, ``browser`` Chromium,
``slow`` more than a few seconds.
"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from asci import db
from asci.config import Settings

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


def _reset_postgres(url: str) -> None:
    engine = db.make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    db.engine_for.cache_clear()


def _sqlite_settings(tmp_path) -> Settings:
    settings = Settings(data_dir=tmp_path / "data")
    db.upgrade(settings)
    return settings


def _postgres_settings(tmp_path) -> Settings:
    url = os.environ.get(POSTGRES_URL_VAR)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{POSTGRES_URL_VAR} is not set: the test command must start PostgreSQL")
        pytest.skip(f"{POSTGRES_URL_VAR} is not set")
    _reset_postgres(url)
    settings = Settings(data_dir=tmp_path / "data", database_url=url)
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


# ------------------------------------------------------------ shared helpers

ARTIFACTS = __import__("pathlib").Path(__file__).resolve().parent.parent / "test-artifacts"
TEST_LABEL = "asci.test"


def free_port(start: int = 5900, end: int = 6900) -> int:
    """A TCP port on 127.0.0.1 nobody listens on, chosen at random in [start, end)."""
    import random

    from asci import net

    port = net.free_port(random.sample(range(start, end), end - start))
    if port is not None:
        return port
    raise RuntimeError(f"no free port in {start}-{end}")


@pytest.fixture(scope="session")
def docker_client():
    """A client for the local Docker daemon (the test command starts it)."""
    from builder.docker_engine import client_for

    client = client_for("unix:///var/run/docker.sock")
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


@pytest.fixture
def artifacts_dir(request):
    """A folder under test-artifacts/ named after the test, kept after the run."""
    folder = ARTIFACTS / request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def pushed_image(docker_client, base_image):
    """``(reference, digest)`` of the base image pushed as 127.0.0.1:5000/asci-test-<uuid>:v1."""
    import uuid

    from builder.docker_engine import push_image

    repository = f"127.0.0.1:5000/asci-test-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(base_image).tag(repository, "v1")
    digest = push_image(docker_client, repository, "v1", log=lambda line: None)
    yield f"{repository}:v1", digest
    docker_client.images.remove(f"{repository}:v1", noprune=True)


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
